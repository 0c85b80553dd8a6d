"""Ingest: takes mail in from IMAP mailboxes and local Maildirs (poller), and turns each
received item into text and attachments (extractor consumer).

`start(runtime)` wires both into a running process; `poll_once(runtime)` polls every mailbox
once (demo, tests).
"""

from __future__ import annotations

from shared.runtime import Consumer, Runtime

from .extractor import CONSUMER, Extractor
from .mailboxes import ImapMailbox, Mailbox, MaildirMailbox, open_mailbox
from .poller import PollReport, poll_once, run_mailbox

__all__ = [
    "Extractor",
    "ImapMailbox",
    "Mailbox",
    "MaildirMailbox",
    "PollReport",
    "open_mailbox",
    "poll_once",
    "start",
]


async def start(runtime: Runtime) -> None:
    """Subscribe the extractor and start one poll loop per configured mailbox."""
    extractor = Extractor(runtime.blobs)
    await runtime.start_consumer(Consumer(CONSUMER, ("item.received",), extractor.handle))
    for config in runtime.tenant.mailboxes:
        runtime.spawn(run_mailbox(runtime, config), f"poll-{config.name}")
