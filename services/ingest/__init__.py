"""Ingest: takes mail in from IMAP mailboxes and local Maildirs (poller), and turns each
received item into text and attachments (extractor consumer).

`start(runtime)` wires both into a running process; `poll_once(runtime)` polls every mailbox
once (demo, tests).
"""

from __future__ import annotations

from shared.runtime import Consumer, Runtime

from .extraction import ExtractionService
from .extractor import CONSUMER, Extractor
from .mailboxes import ImapMailbox, Mailbox, MaildirMailbox, open_mailbox
from .poller import PollReport, poll_once, run_mailbox
from .scanfiles import CONSUMER as SCAN_PLACEMENT
from .scans import ScanFolder

__all__ = [
    "ExtractionService",
    "Extractor",
    "ImapMailbox",
    "Mailbox",
    "MaildirMailbox",
    "PollReport",
    "ScanFolder",
    "open_mailbox",
    "poll_once",
    "start",
]


async def start(runtime: Runtime) -> None:
    """Subscribe the extractor and start one poll loop per configured mailbox."""
    service = ExtractionService.from_settings(runtime.settings)
    runtime.spawn(service.serve(), "extract-pool")
    extractor = Extractor(runtime.blobs, service)
    await runtime.start_consumer(Consumer(CONSUMER, ("item.received",), extractor.handle))
    for config in runtime.tenant.mailboxes:
        runtime.spawn(run_mailbox(runtime, config), f"poll-{config.name}")
    if runtime.settings.scan_dir is not None:
        folder = ScanFolder(runtime, service)
        await runtime.start_consumer(Consumer(SCAN_PLACEMENT, ("item.failed",),
                                              folder.failed_scans().handle))
        runtime.spawn(folder.run(), "scan-folder")
