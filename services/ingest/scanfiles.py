"""Where a scanned file ends: the archive folder while its item is fine, the error folder
beside a `<name>.reason.txt` once its item failed.

The scan folder places each file right after intake (scans.py). Extraction runs later, in the
extractor consumer, maybe in another process: a scan that fails there (an OCR timeout, a limit
hit in the worker pool, a PDF that turns out unreadable) is failed on the item, and
`FailedScans` (an `item.failed` consumer in the process that owns the scan folder) then moves
its file from the archive to the error folder. It runs after the failure is committed, so the
file follows the final outcome; the bus redelivers it after a crash and every step is
idempotent (a file already in the error folder is left alone, the reason note is rewritten).
A file intake has not placed yet (a crash between its commit and its move) is left to intake:
its next look finds the content taken in and failed, and after moving a file to the archive
it looks at the item's state once more, so a failure committed meanwhile is not missed.
The item keeps its reference: `source_ref` is the file name, `raw_sha256` identifies the file
(a name taken by another file gets `-<sha[:12]>`), and the reason note names the item.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import structlog

from shared.contracts import Channel, ItemEvent, ItemFailed, ItemState
from shared.db import UnitOfWork
from shared.files import fsync_dir, write_atomic
from shared.personal import scrub_cpr

log = structlog.get_logger(__name__)
CONSUMER = "scan-placement"
# Failures of the extraction: the extractor's own, its dead letters, and the reconciler giving
# up on an item stuck before extraction. Intake failures ("ingest") were placed at intake.
EXTRACTION_STAGES = {"extractor", ItemState.RECEIVED.value}


def target_name(folder: Path, path: Path, sha: str) -> Path:
    """`folder/<name>`, or `folder/<stem>-<sha[:12]><suffix>` when another file has the name."""
    target = folder / path.name
    if target.exists() and sha_of(target) != sha:
        target = folder / f"{path.stem}-{sha[:12]}{path.suffix}"
    return target


def place(path: Path, folder: Path, sha: str, reason: str, item_id: str = "") -> Path:
    """Move `path` into `folder` durably; with a reason, write the note beside it first (a
    crash in between leaves the file where it was and the note rewritten next time)."""
    target = target_name(folder, path, sha)
    if reason:
        # The shared, deliberately wide pattern ("010203 1234", a number inside a file name).
        note = scrub_cpr(reason, "[CPR]") + "\n" + (f"item {item_id}\n" if item_id else "")
        write_atomic(folder / f"{target.name}.reason.txt", note.encode("utf-8"))
    os.replace(path, target)  # same content under a name with its sha: replacing loses nothing
    fsync_dir(folder)
    fsync_dir(path.parent)
    return target


def sha_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _found(folder: Path, name: str, sha: str) -> Path | None:
    """The file of that content in `folder`, under its name or the name with its sha."""
    plain = folder / name
    for candidate in (plain, folder / f"{plain.stem}-{sha[:12]}{plain.suffix}"):
        if candidate.is_file() and sha_of(candidate) == sha:
            return candidate
    return None


def relocate(inbox: Path, archive: Path, errors: Path, name: str, sha: str, reason: str,
             item_id: str) -> str:
    """The failed scan's file from the archive to the error folder: moved, already (in the
    error folder), waiting (still in the drop folder: intake, after a crash, has not placed it
    yet; its next look sees the failure and places it) or gone (removed by someone)."""
    if (found := _found(archive, name, sha)) is not None:
        errors.mkdir(parents=True, exist_ok=True)
        place(found, errors, sha, reason, item_id)
        return "moved"
    if _found(errors, name, sha) is not None:
        return "already"
    if _found(inbox, name, sha) is not None:
        return "waiting"
    return "gone"


class FailedScans:
    """The `item.failed` consumer for the scan folder's files (see the module docstring)."""

    def __init__(self, mailbox: str, inbox: Path, archive: Path, errors: Path) -> None:
        self.mailbox, self.inbox, self.archive, self.errors = mailbox, inbox, archive, errors

    async def handle(self, event: ItemEvent, uow: UnitOfWork) -> None:
        if not isinstance(event, ItemFailed) or event.stage not in EXTRACTION_STAGES:
            return
        item = await uow.item(event.item_id, lock=False)
        if (item.channel != Channel.SCAN.value or item.mailbox != self.mailbox
                or not item.raw_sha256):
            return
        outcome = await asyncio.to_thread(
            relocate, self.inbox, self.archive, self.errors, item.source_ref, item.raw_sha256,
            event.reason, str(item.id))
        log.info("failed scan placed", outcome=outcome, item_id=str(item.id))
