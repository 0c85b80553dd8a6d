"""The audit trail: an append-only log where each entry's hash covers the previous hash.

`append` writes a pending entry in the caller's transaction, so it commits or rolls back with
the effect it records, and writers never wait for each other. `chain_pending` (run by every
process's housekeeping) links committed pending entries into the log in batches, serialised on
the single `AuditHead` row (SELECT ... FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE
already admits one writer), so the chain has one tip even with many processes. `verify`
recomputes every hash; changing, deleting or re-ordering a row breaks it.

Details hold decisions and ids only: never message bodies, extracted text or CPR numbers.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import AuditEntry, AuditHead, AuditPending, utcnow

GENESIS = "0" * 64
HEAD_ID = 1


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_seq: int | None
    message: str


def timestamp(at: datetime) -> str:
    """UTC ISO 8601 with microseconds. SQLite returns naive datetimes (stored as UTC)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def plain(details: dict[str, Any]) -> dict[str, Any]:
    """`details` as it comes back from a JSON column (tuples become lists, ids strings)."""
    result: dict[str, Any] = json.loads(json.dumps(details, default=str))
    return result


def canonical(*, seq: int, action: str, actor: str, item_id: uuid.UUID | str | None,
              unit: str | None, clerk: str | None, case_number: str | None,
              sender: str | None, details: dict[str, Any], at: datetime) -> str:
    """The bytes that are hashed: sorted keys, no whitespace, same on SQLite and PostgreSQL."""
    return json.dumps({
        "seq": seq, "action": action, "actor": actor,
        "item_id": str(item_id) if item_id is not None else None,
        "unit": unit, "clerk": clerk, "case_number": case_number, "sender": sender,
        "details": details, "at": timestamp(at),
    }, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(prev_hash: str, canonical_json: str) -> str:
    return hashlib.sha256((prev_hash + canonical_json).encode()).hexdigest()


def entry_hash(entry: Any) -> str:
    """The hash an entry (an `AuditEntry` or a row of its columns) should carry."""
    return chain_hash(entry.prev_hash, canonical(
        seq=entry.seq, action=entry.action, actor=entry.actor, item_id=entry.item_id,
        unit=entry.unit, clerk=entry.clerk, case_number=entry.case_number, sender=entry.sender,
        details=entry.details, at=entry.at))


async def _lock_head(session: AsyncSession) -> AuditHead:
    stmt = (select(AuditHead).where(AuditHead.id == HEAD_ID).with_for_update()
            .execution_options(populate_existing=True))
    head = (await session.execute(stmt)).scalar_one_or_none()
    if head is not None:
        return head
    # First entry ever: concurrent writers may both get here; ON CONFLICT DO NOTHING lets one
    # insert win and the others then wait on its row lock.
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    await session.execute(insert(AuditHead).values(id=HEAD_ID, seq=0, hash=GENESIS)
                          .on_conflict_do_nothing(index_elements=["id"]))
    return (await session.execute(stmt)).scalar_one()


async def append(session: AsyncSession, *, action: str, actor: str,
                 item_id: uuid.UUID | None = None, unit: str | None = None,
                 clerk: str | None = None, case_number: str | None = None,
                 sender: str | None = None, details: dict[str, Any]) -> AuditPending:
    """Record an entry within the caller's transaction: it commits with the caller's change,
    and `chain_pending` links it into the chain moments later."""
    entry = AuditPending(item_id=item_id, action=action, actor=actor, unit=unit, clerk=clerk,
                         case_number=case_number, sender=sender, details=plain(details),
                         at=utcnow())
    session.add(entry)
    await session.flush()
    return entry


async def chain_pending(session: AsyncSession, *, limit: int = 500) -> int:
    """Link up to `limit` committed pending entries into the chain, oldest first, under the
    head lock; the caller commits. Returns how many were chained."""
    pending = (await session.execute(
        select(AuditPending).order_by(AuditPending.id).limit(limit))).scalars().all()
    if not pending:
        return 0
    head = await _lock_head(session)
    # Another chainer may have taken some of these while this one waited for the lock.
    still = set((await session.execute(select(AuditPending.id).where(
        AuditPending.id.in_([p.id for p in pending])))).scalars())
    for p in (p for p in pending if p.id in still):
        seq = head.seq + 1
        digest = chain_hash(head.hash, canonical(
            seq=seq, action=p.action, actor=p.actor, item_id=p.item_id, unit=p.unit,
            clerk=p.clerk, case_number=p.case_number, sender=p.sender, details=p.details,
            at=p.at))
        session.add(AuditEntry(seq=seq, item_id=p.item_id, action=p.action, actor=p.actor,
                               unit=p.unit, clerk=p.clerk, case_number=p.case_number,
                               sender=p.sender, details=p.details, at=p.at,
                               prev_hash=head.hash, hash=digest))
        head.seq, head.hash = seq, digest
    await session.execute(delete(AuditPending).where(AuditPending.id.in_(still)))
    await session.flush()
    return len(still)


async def recorded(session: AsyncSession, item_id: uuid.UUID, action: str) -> bool:
    """Whether `item_id` has an entry for `action`, chained or still pending."""
    for model in (AuditPending, AuditEntry):
        found = (await session.execute(select(model.item_id).where(
            model.item_id == item_id, model.action == action).limit(1))).first()
        if found is not None:
            return True
    return False


async def verify(session: AsyncSession, *, batch: int = 1000) -> VerifyResult:
    """Recompute the whole chain; report the first entry that does not fit."""
    prev_seq, prev_hash, checked = 0, GENESIS, 0
    while True:
        # Plain rows, not ORM objects: a long log must not pile up in the identity map.
        rows = (await session.execute(
            select(*AuditEntry.__table__.c).where(AuditEntry.seq > prev_seq)
            .order_by(AuditEntry.seq).limit(batch))).all()
        for entry in rows:
            problem = None
            if entry.seq != prev_seq + 1:
                problem = f"entry {prev_seq + 1} is missing"
            elif entry.prev_hash != prev_hash:
                problem = f"entry {entry.seq} does not link to the previous entry"
            elif entry_hash(entry) != entry.hash:
                problem = f"entry {entry.seq} was altered (hash mismatch)"
            if problem:
                bad = prev_seq + 1 if entry.seq != prev_seq + 1 else entry.seq
                return VerifyResult(False, checked, bad, f"audit chain broken: {problem}")
            prev_seq, prev_hash, checked = entry.seq, entry.hash, checked + 1
        if len(rows) < batch:
            break
    head = await session.get(AuditHead, HEAD_ID, populate_existing=True)
    if head is not None and (head.seq, head.hash) != (prev_seq, prev_hash):
        return VerifyResult(False, checked, prev_seq + 1,
                            f"audit chain broken: the head is at entry {head.seq} but the log "
                            f"ends at entry {prev_seq} (entries removed from the end)")
    return VerifyResult(True, checked, None, f"audit chain intact: {checked} entries verified")
