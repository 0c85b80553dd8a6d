"""Scanned post: the drop folder a scanner or scanning bureau delivers PDF, TIFF, PNG and JPEG
files to.

A file is taken only once its size and modification time held still between two looks (a
half-written file is left alone), and only regular files not named like temporary files.
Per file: read -> check it in the worker pool (type, pages, pixels) -> store it as a blob
(fsynced) -> one transaction that dedupes on the content's sha256 and creates the item (or a
failed item with the reason) with its event in the outbox -> publish -> only then move the file
to the archive folder, or to the error folder beside a `<name>.reason.txt`. A crash anywhere
leaves the file in the drop folder; the next look finds its sha256 already taken in and only
moves it. So no file is lost and none becomes two items. A scan whose extraction fails later
is moved on from the archive to the error folder by `scanfiles.FailedScans`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from shared import metrics
from shared.contracts import BlobRef, Channel, ItemEvent, ItemFailed, ItemReceived, ItemState
from shared.db import Item, SourceMessage, UnitOfWork
from shared.errors import InvalidInput
from shared.personal import scrub_cpr
from shared.runtime import Runtime

from .extraction import ExtractionService
from .scanfiles import FailedScans, place, relocate, sha_of

log = structlog.get_logger(__name__)
PRODUCER = "ingest"
_TEMPORARY = (".tmp", ".part", ".partial", ".crdownload", ".filepart", "~")
SCAN_KINDS = ("pdf", "image")


@dataclass
class ScanReport:
    new: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)


class ScanFolder:
    def __init__(self, runtime: Runtime, service: ExtractionService) -> None:
        settings = runtime.settings
        if settings.scan_dir is None:
            raise ValueError("no scan folder configured (POSTFORDELER_SCAN_DIR)")
        self.runtime = runtime
        self.service = service
        self.mailbox = settings.scan_mailbox
        self.inbox = Path(settings.scan_dir)
        self.archive = Path(settings.scan_archive_dir or self.inbox / "Behandlet")
        self.errors = Path(settings.scan_error_dir or self.inbox / "Fejl")
        self._last: dict[str, tuple[int, int]] = {}  # name -> (size, mtime_ns) at the last look

    async def run(self) -> None:
        """Look at the folder every scan_interval seconds until cancelled."""
        while True:
            try:
                await self.look()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scan folder look failed", folder=str(self.inbox))
            await asyncio.sleep(self.runtime.settings.scan_interval)

    async def look(self) -> ScanReport:
        """One look: take every file that is unchanged since the previous look."""
        report = ScanReport()
        now = await asyncio.to_thread(self._list)
        limit = asyncio.Semaphore(max(1, self.runtime.settings.ingest_concurrency))

        async def one(name: str, stamp: tuple[int, int]) -> None:
            async with limit:
                try:
                    outcome = await self.take(name, stamp)
                except asyncio.CancelledError:
                    raise
                except Exception:  # the database or the disk: the next look tries again
                    log.exception("scan not taken in", file=scrub_cpr(name))
                    outcome = "waiting"
            getattr(report, outcome or "waiting").append(name)

        stable = []
        for name, stamp in sorted(now.items()):
            if self._last.get(name) == stamp:
                stable.append(one(name, stamp))
            else:
                report.waiting.append(name)
        await asyncio.gather(*stable)
        self._last = {name: stamp for name, stamp in now.items() if name in report.waiting}
        return report

    def _list(self) -> dict[str, tuple[int, int]]:
        for folder in (self.inbox, self.archive, self.errors):
            folder.mkdir(parents=True, exist_ok=True)
        found = {}
        with os.scandir(self.inbox) as entries:
            for entry in entries:
                if entry.name.startswith(".") or entry.name.lower().endswith(_TEMPORARY):
                    continue
                if entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    found[entry.name] = (st.st_size, st.st_mtime_ns)
        return found

    async def take(self, name: str, stamp: tuple[int, int]) -> str | None:
        """Take one stable file in; returns new, failed or duplicates (None: it changed)."""
        path = self.inbox / name
        limits = self.service.limits
        data: bytes | None = None
        problem = ""
        if stamp[0] > limits.max_bytes:
            sha = await asyncio.to_thread(sha_of, path)
            problem = f"file too large: {stamp[0]} bytes (limit {limits.max_bytes})"
        else:
            data = await asyncio.to_thread(path.read_bytes)
            sha = hashlib.sha256(data).hexdigest()
        if await asyncio.to_thread(_stamp, path) != stamp:
            return None  # written to again after all: wait for it to settle
        content_type = "application/octet-stream"
        if data is not None:
            if not data:
                problem = "empty file"
            else:
                try:
                    probe = await self.service.probe(data, name)
                    doc = probe.parts[0]
                    content_type = doc.content_type
                    if doc.kind not in SCAN_KINDS:
                        problem = f"not scanned post: a {doc.kind or 'file'} (PDF, TIFF, PNG, JPEG)"
                except InvalidInput as exc:
                    problem = str(exc)[:2000]
        blob = await self.runtime.blobs.put(data, content_type) if data is not None else None
        try:
            outcome, reason, emitted = await self._record(name, sha, blob, problem)
        except IntegrityError:  # another process took the same content in just now
            outcome, reason, emitted = await self._record(name, sha, blob, problem)
        try:
            # Placed before the event goes out, so the extractor (and FailedScans after a
            # failed extraction) finds the file in the archive, not still in the drop folder.
            await asyncio.to_thread(self._move, path, sha, reason)
        finally:
            await self.runtime.relay.publish(emitted)
        if outcome == "duplicates" and not reason:
            await self._failed_meanwhile(name, sha)
        if outcome == "new":
            metrics.ITEMS_RECEIVED.labels(Channel.SCAN.value).inc()
        elif outcome == "failed":
            metrics.ITEMS_FAILED.labels(PRODUCER).inc()
        return outcome

    async def _record(self, name: str, sha: str, blob: BlobRef | None,
                      problem: str) -> tuple[str, str, list[ItemEvent]]:
        async with self.runtime.uow() as uow:
            outcome, reason = await record_scan(uow, self.mailbox, name, sha, blob, problem)
            await uow.commit()
        return outcome, reason, uow.emitted

    async def _failed_meanwhile(self, name: str, sha: str) -> None:
        """A file taken in before (a crash kept it here) whose item failed extraction while
        this look moved it to the archive: FailedScans found it still here, so place it."""
        async with self.runtime.uow() as uow:
            item = (await uow.session.execute(select(Item).join(
                SourceMessage, SourceMessage.item_id == Item.id).where(
                SourceMessage.mailbox == self.mailbox, SourceMessage.source_ref == sha))
            ).scalar_one_or_none()
        if item is not None and item.channel == Channel.SCAN.value and item.failure_reason:
            await asyncio.to_thread(relocate, self.inbox, self.archive, self.errors, name, sha,
                                    item.failure_reason, str(item.id))

    def _move(self, path: Path, sha: str, reason: str) -> None:
        place(path, self.errors if reason else self.archive, sha, reason)

    def failed_scans(self) -> FailedScans:
        """The consumer that moves files whose extraction failed later (scanfiles.py)."""
        return FailedScans(self.mailbox, self.inbox, self.archive, self.errors)


async def record_scan(uow: UnitOfWork, mailbox: str, name: str, sha: str,
                      blob: BlobRef | None, problem: str) -> tuple[str, str]:
    """One scanned file into the database: (outcome, failure reason or "")."""
    seen = (await uow.session.execute(select(SourceMessage.item_id).where(
        SourceMessage.mailbox == mailbox, SourceMessage.source_ref == sha))).scalar_one_or_none()
    if seen is not None:
        first = await uow.item(seen, lock=False)
        log.info("scan already taken in", file=scrub_cpr(name), item_id=str(seen))
        return "duplicates", first.failure_reason or "" if first.channel == "scan" else ""
    item = Item(id=uuid.uuid4(), correlation_id=uuid.uuid4(), channel=Channel.SCAN.value,
                mailbox=mailbox, source_ref=name[:255], raw_sha256=sha, subject=name)
    uow.session.add(item)
    uow.session.add(SourceMessage(mailbox=mailbox, source_ref=sha, item_id=item.id))
    if problem or blob is None:
        reason = problem or "not stored"
        item.failure_reason = reason
        failed = ItemFailed(correlation_id=item.correlation_id, producer=PRODUCER,
                            item_id=item.id, stage=PRODUCER, reason=reason)
        uow.transition(item, ItemState.FAILED, reason=reason, event=failed)
        uow.emit(failed)
        log.warning("scan refused", file=scrub_cpr(name), item_id=str(item.id),
                    reason=scrub_cpr(reason))
        return "failed", reason
    received = ItemReceived(correlation_id=item.correlation_id, producer=PRODUCER,
                            item_id=item.id, channel=Channel.SCAN, mailbox=mailbox,
                            source_ref=name[:255], raw=blob)
    uow.transition(item, ItemState.RECEIVED, event=received)
    uow.emit(received)
    # A scanning bureau may name files after the person (CPR numbers included): not in logs.
    log.info("scan received", file=scrub_cpr(name), item_id=str(item.id))
    return "new", ""


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


async def run_scans(runtime: Runtime, service: ExtractionService) -> None:
    await ScanFolder(runtime, service).run()
