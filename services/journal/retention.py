"""Retention: message content is deleted `retention_days` after an item was finished, while
the audit entries and the item's state and history stay (data-protection rules).

Message content is: the raw message, its extracted text, its attachments and their texts
(blobs), the item's subject and the entities found in it (columns), and the item's events in
the outbox (ItemExtracted carries the subject and addresses, ItemClassified entity values).
What stays: the item row (state, unit, clerk, case number, the sender's address as in the audit
log, the sha256 of the raw message as proof of what came in), its transitions, the audit log
(decisions and ids, never content), receipt and delivery rows (ids and addresses), and documents
in the built-in local archive: the archive is the municipality's case file, kept under archive
law, so a blob one of its documents refers to is never deleted here.

An item is due when it is done, not relevant or failed (an item in manual triage waits for a
person and keeps its content), nobody touched it (state change, claim, hand-in) for the
retention period, and no receipt, delivery or outbox event of it is still waiting.

Two phases, so a crash between them loses nothing and leaks nothing:
1. purge, one transaction per batch with the items locked: clear the columns, delete the
   outbox rows, and write a `retention` row listing the blobs the item referred to, plus an
   audit entry `content_deleted`;
2. collect: for retention rows not yet collected, delete each listed blob that no item still
   within retention refers to (raw_sha256, BlobRefs in outbox events, local archive documents).
   Blobs are content-addressed and shared (a logo in every signature, the same mail in two
   mailboxes). A blob being stored again right now for a new item is put before its reference
   commits; `FileBlobStore.put` touches an existing blob, and the collector moves a blob aside
   and puts it back if it was touched within `grace` seconds, so that new reference never
   points at nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy import ColumnElement, and_, delete, exists, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shared import audit
from shared.blobs import FileBlobStore
from shared.contracts import ItemState
from shared.db import UnitOfWorkFactory
from shared.db.models import (
    Delivery,
    EsdhDocument,
    Item,
    OutboxMessage,
    Receipt,
    Retention,
    utcnow,
)

log = structlog.get_logger(__name__)

PURGEABLE = (ItemState.DONE.value, ItemState.NOT_RELEVANT.value, ItemState.FAILED.value)
BLOB_TOPICS = ("item.received", "item.extracted")  # the events that carry BlobRefs
_BLOB_REF = re.compile(r'"sha256":\s*"([0-9a-f]{64})"')
_CHUNK = 500


@dataclass
class RetentionReport:
    dry_run: bool
    items: int = 0  # items whose content was (or would be) deleted
    blobs_deleted: int = 0
    bytes_freed: int = 0
    blobs_kept: int = 0  # still referred to by an item within retention, or touched again
    item_ids: list[uuid.UUID] = field(default_factory=list)


def blob_refs(payload: str) -> set[str]:
    """The sha256 of every BlobRef in an event's JSON (raw, text, attachments, their texts)."""
    return set(_BLOB_REF.findall(payload))


def due(cutoff: datetime) -> ColumnElement[bool]:
    """Items whose content is due for deletion (see the module docstring)."""
    return and_(
        Item.state.in_(PURGEABLE),
        Item.updated_at < cutoff,
        or_(Item.claimed_at.is_(None), Item.claimed_at < cutoff),
        or_(Item.handled_at.is_(None), Item.handled_at < cutoff),
        ~exists().where(Retention.item_id == Item.id),
        ~exists().where(Receipt.item_id == Item.id, Receipt.status == "pending"),
        ~exists().where(Delivery.item_id == Item.id, Delivery.status == "pending"),
        ~exists().where(OutboxMessage.item_id == Item.id, OutboxMessage.published_at.is_(None)),
    )


def _chunks(values: Sequence[str], size: int = _CHUNK) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield list(values[start:start + size])


class RetentionJob:
    def __init__(self, uow: UnitOfWorkFactory, blobs: FileBlobStore, days: int, *,
                 batch: int = 200, grace: float = 3600.0) -> None:
        if days < 1:
            raise ValueError("retention_days must be at least 1")
        self.uow, self.blobs, self.days = uow, blobs, days
        self.batch, self.grace = batch, grace

    async def run(self, *, dry_run: bool = False) -> RetentionReport:
        report = RetentionReport(dry_run=dry_run)
        started = time.time()  # blobs touched after started - grace are wanted again
        cutoff = utcnow() - timedelta(days=self.days)
        if dry_run:
            await self._preview(cutoff, report)
            return report
        while True:
            purged = await self._purge_batch(cutoff)
            if purged is None:
                continue  # another run took some of these items: select again
            report.item_ids += purged
            if len(purged) < self.batch:
                break
        report.items = len(report.item_ids)
        while await self._collect(started, report):
            pass
        if report.items or report.blobs_deleted:
            log.info("retention: message content deleted", items=report.items,
                     blobs=report.blobs_deleted, bytes=report.bytes_freed,
                     blobs_kept=report.blobs_kept, retention_days=self.days)
        return report

    # -- phase 1 ----------------------------------------------------------------------------

    async def _purge_batch(self, cutoff: datetime) -> list[uuid.UUID] | None:
        async with self.uow() as uow:
            s = uow.session
            stmt = select(Item).where(due(cutoff)).order_by(Item.updated_at).limit(self.batch)
            if s.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)  # runs in other processes
            items = (await s.execute(stmt)).scalars().all()
            if not items:
                return []
            refs = await self._item_blobs(s, items)
            now = utcnow()
            # A concurrent run may purge the same items first: on SQLite (no row locks), and on
            # PostgreSQL when it commits between this run's snapshot and its row lock. Its
            # retention rows then collide with ours, at a flush or at commit.
            try:
                for item in items:
                    item.subject = None
                    item.entities = None
                    s.add(Retention(item_id=item.id, purged_at=now,
                                    blobs=sorted(refs[item.id])))
                    await audit.append(s, action="content_deleted", actor="retention",
                                       item_id=item.id, unit=item.unit, clerk=item.clerk,
                                       case_number=item.case_number, sender=item.sender,
                                       details={"retention_days": self.days,
                                                "blobs": len(refs[item.id])})
                await s.execute(delete(OutboxMessage).where(
                    OutboxMessage.item_id.in_([i.id for i in items])))
                await uow.commit()
            except IntegrityError:
                return None
            return [i.id for i in items]

    @staticmethod
    async def _item_blobs(s: AsyncSession, items: Sequence[Item]) -> dict[uuid.UUID, set[str]]:
        refs = {i.id: {i.raw_sha256} if i.raw_sha256 else set() for i in items}
        rows = await s.execute(select(OutboxMessage.item_id, OutboxMessage.payload).where(
            OutboxMessage.item_id.in_(list(refs)), OutboxMessage.topic.in_(BLOB_TOPICS)))
        for item_id, payload in rows:
            refs[item_id] |= blob_refs(payload)
        return refs

    # -- phase 2 ----------------------------------------------------------------------------

    async def _collect(self, started: float, report: RetentionReport) -> bool:
        """Delete the blobs of up to one batch of uncollected retention rows; False when
        there were none. The rows stay locked meanwhile (PostgreSQL), so runs in other
        processes take other rows."""
        async with self.uow() as uow:
            s = uow.session
            stmt = (select(Retention.item_id, Retention.blobs)
                    .where(Retention.blobs_deleted_at.is_(None))
                    .order_by(Retention.purged_at).limit(self.batch))
            if s.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            rows = (await s.execute(stmt)).all()
            if not rows:
                return False
            candidates = {sha for _, blobs in rows for sha in blobs or ()}
            referenced = await self._referenced(s, candidates, set())
            report.blobs_kept += len(candidates & referenced)
            for sha in sorted(candidates - referenced):
                freed = await asyncio.to_thread(self._remove, sha, started - self.grace)
                if freed is None:
                    report.blobs_kept += 1
                elif freed:
                    report.blobs_deleted += 1
                    report.bytes_freed += freed
            await s.execute(update(Retention).where(
                Retention.item_id.in_([r[0] for r in rows])).values(blobs_deleted_at=utcnow()))
            await uow.commit()
        return len(rows) == self.batch

    @staticmethod
    async def _referenced(s: AsyncSession, candidates: set[str],
                          leaving: set[uuid.UUID]) -> set[str]:
        """Which of `candidates` an item still within retention refers to. `leaving`: items
        about to be purged (a dry run), whose references do not count."""
        found: set[str] = set()
        if not candidates:
            return found
        for chunk in _chunks(sorted(candidates)):
            rows = await s.execute(select(Item.id, Item.raw_sha256).where(
                Item.raw_sha256.in_(chunk),
                ~exists().where(Retention.item_id == Item.id)))
            found |= {sha for item_id, sha in rows if sha and item_id not in leaving}
            found |= {sha for sha in (await s.execute(select(EsdhDocument.blob_sha256).where(
                EsdhDocument.blob_sha256.in_(chunk)))).scalars() if sha}
        # Purged items have no outbox rows left, so every row here is an item's within
        # retention. One pass over the events that carry blobs.
        result = await s.stream(select(OutboxMessage.item_id, OutboxMessage.payload)
                                .where(OutboxMessage.topic.in_(BLOB_TOPICS))
                                .execution_options(yield_per=1000))
        async for item_id, payload in result:
            if item_id not in leaving:
                found |= blob_refs(payload) & candidates
        return found

    def _remove(self, sha: str, touched_after: float) -> int | None:
        """Delete one blob; its size, 0 when it was gone already, None when it was stored
        again (touched) after `touched_after` and so is kept."""
        path = self.blobs.path(sha)
        aside = path.with_name(f".purge-{sha}")
        try:
            os.rename(path, aside)  # from here on a put writes a fresh copy
        except FileNotFoundError:
            if not aside.exists():  # else: left by a crash between rename and unlink
                return 0
        try:
            stat = aside.stat()
            if stat.st_mtime >= touched_after:
                # Wanted again: put it back, unless a fresh copy was written meanwhile.
                with contextlib.suppress(FileExistsError):
                    os.link(aside, path)
                aside.unlink(missing_ok=True)
                return None
            aside.unlink()
        except FileNotFoundError:  # another run (SQLite has no row locks) got there first
            return 0
        return stat.st_size

    async def _preview(self, cutoff: datetime, report: RetentionReport) -> None:
        """What a run would delete, without changing anything."""
        async with self.uow() as uow:
            s = uow.session
            items = (await s.execute(select(Item).where(due(cutoff)))).scalars().all()
            refs = await self._item_blobs(s, items)
            pending = (await s.execute(select(Retention.blobs).where(
                Retention.blobs_deleted_at.is_(None)))).scalars().all()
            report.item_ids = [i.id for i in items]
            report.items = len(items)
            candidates = {sha for shas in refs.values() for sha in shas}
            candidates |= {sha for blobs in pending for sha in blobs or ()}
            referenced = await self._referenced(s, candidates, set(report.item_ids))
        report.blobs_kept = len(candidates & referenced)
        for sha in candidates - referenced:
            path = self.blobs.path(sha)
            if path.exists():
                report.blobs_deleted += 1
                report.bytes_freed += path.stat().st_size
