"""The items API (scoped to what the caller may see), plus the audit journal for auditors.

Clerks see their units' items (the fallback unit's clerks thereby see the triage queue),
auditors everything, administrators every item outside the sensitive units. An item the
caller may not see answers 404, exactly like an item that does not exist.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from shared import audit
from shared.blobs import FileBlobStore
from shared.contracts import ItemExtracted
from shared.db.events import latest_event
from shared.db.models import AuditEntry, Correction, Delivery, Item, Receipt
from shared.tenant import Tenant

from .audit import entry_filters
from .deps import Auditor, Principal, Reader, Role, Session, current_principal
from .schemas import (
    AttachmentOut,
    AuditOut,
    AuditPage,
    CorrectionOut,
    DeliveryOut,
    ItemDetail,
    ItemPage,
    ItemSummary,
    Problem,
    VerifyOut,
)

router = APIRouter(prefix="/api/v1", dependencies=[Depends(current_principal)],
                   responses={401: {"model": Problem}, 403: {"model": Problem}})
Limit = Annotated[int, Query(ge=1, le=1000)]
# Bounded: the databases take 64-bit integers, and paging that deep means a narrower filter.
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
NOT_FOUND = "item not found"


def _utc(value: datetime) -> datetime:
    # Stored as UTC; SQLite compares the text form, so the bound value must be UTC too.
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC)


async def _count(s: AsyncSession, stmt: Select[Any]) -> int:
    return int((await s.execute(select(func.count()).select_from(stmt.subquery()))).scalar_one())


def tenant(request: Request) -> Tenant:
    found: Tenant = request.app.state.tenant
    return found


def blobs(request: Request) -> FileBlobStore:
    found: FileBlobStore = request.app.state.blobs
    return found


def sensitive_units(t: Tenant) -> set[str]:
    return {u.id for u in t.units.values() if u.sensitive}


def is_sensitive(item: Item, t: Tenant) -> bool:
    return item.unit in sensitive_units(t) or bool((item.decision or {}).get("sensitive"))


def visible(p: Principal, t: Tenant) -> ColumnElement[bool]:
    """The SQL form of `Principal.may_see_unit` (org.yaml's sensitive units and items a rule
    marked sensitive)."""
    if p.has(Role.AUDITOR):
        return true()
    clauses: list[ColumnElement[bool]] = []
    if p.has(Role.CLERK) and p.units:
        clauses.append(Item.unit.in_(sorted(p.units)))
    if p.has(Role.ADMINISTRATOR):
        hidden = sorted(sensitive_units(t))
        # Items a rule marked sensitive too (`decision.sensitive`, as `is_sensitive` reads it).
        marked = Item.decision["sensitive"].as_boolean().is_not(True)
        clauses.append(and_(marked, or_(Item.unit.is_(None), Item.unit.not_in(hidden)))
                       if hidden else marked)
    return or_(*clauses) if clauses else false()


async def visible_item(s: AsyncSession, p: Principal, t: Tenant, item_id: uuid.UUID, *,
                       lock: bool = False) -> Item:
    stmt = select(Item).where(Item.id == item_id)
    if lock:
        stmt = stmt.with_for_update()
    item = (await s.execute(stmt)).scalar_one_or_none()
    if item is None or not p.may_see_unit(item.unit, sensitive=is_sensitive(item, t)):
        raise HTTPException(404, NOT_FOUND)
    return item


async def extracted(s: AsyncSession, item_id: uuid.UUID) -> ItemExtracted | None:
    """The item's latest ItemExtracted event."""
    return await latest_event(s, item_id, ItemExtracted)


async def detail(s: AsyncSession, item_id: uuid.UUID, store: FileBlobStore) -> ItemDetail:
    item = (await s.execute(select(Item).where(Item.id == item_id)
                            .options(selectinload(Item.transitions)))).scalar_one()
    receipt = await s.get(Receipt, item_id)
    deliveries = (await s.execute(select(Delivery).where(Delivery.item_id == item_id)
                                  .order_by(Delivery.created_at))).scalars().all()
    corrections = (await s.execute(select(Correction).where(Correction.item_id == item_id)
                                   .order_by(Correction.id))).scalars().all()
    event = await extracted(s, item_id)
    text = None
    if event is not None:
        try:
            text = (await store.get(event.text)).decode("utf-8", errors="replace")
        except Exception:  # purged by retention or lost: the rest of the item still shows
            text = None
    return ItemDetail.model_validate({
        **ItemSummary.model_validate(item).model_dump(),
        "correlation_id": item.correlation_id, "decision": item.decision,
        "failure_reason": item.failure_reason, "receipt": receipt.status if receipt else None,
        "history": item.transitions, "text": text,
        "attachments": [AttachmentOut(index=i, filename=a.filename,
                                      content_type=a.content_type, size=a.blob.size,
                                      has_text=a.text is not None)
                        for i, a in enumerate(event.attachments if event else ())],
        "deliveries": [DeliveryOut.model_validate(d) for d in deliveries],
        "corrections": [CorrectionOut.model_validate(c) for c in corrections]})


@router.get("/items/{item_id}", response_model=ItemDetail, tags=["items"],
            responses={404: {"model": Problem}})
async def get_item(item_id: uuid.UUID, s: Session, p: Reader, request: Request) -> ItemDetail:
    """One item: state, decision, history, extracted text, attachments and deliveries."""
    await visible_item(s, p, tenant(request), item_id)
    return await detail(s, item_id, blobs(request))


@router.get("/items", response_model=ItemPage, tags=["items"])
async def list_items(s: Session, p: Reader, request: Request, state: str | None = None,
                     unit: str | None = None, claimed_by: str | None = None,
                     mine: bool = False, unclaimed: bool = False, handled: bool | None = None,
                     sender: str | None = None, subject: str | None = None,
                     date_from: datetime | None = None, date_to: datetime | None = None,
                     limit: Limit = 50, offset: Offset = 0) -> ItemPage:
    """Items the caller may see, newest first. `mine`: claimed by me; `unclaimed`: nobody's."""
    stmt = select(Item).where(visible(p, tenant(request)))
    filters: list[ColumnElement[bool]] = []
    if state:
        filters.append(Item.state == state)
    if unit:
        filters.append(Item.unit == unit)
    if claimed_by:
        filters.append(Item.claimed_by == claimed_by)
    if mine:
        filters.append(Item.claimed_by == p.name)
    if unclaimed:
        filters.append(Item.claimed_by.is_(None))
    if handled is not None:
        filters.append(Item.handled_at.is_not(None) if handled else Item.handled_at.is_(None))
    if sender:
        filters.append(func.lower(Item.sender) == sender.lower())
    if subject:
        filters.append(func.lower(Item.subject).contains(subject.lower(), autoescape=True))
    if date_from:
        filters.append(Item.created_at >= _utc(date_from))
    if date_to:
        filters.append(Item.created_at < _utc(date_to))
    if filters:
        stmt = stmt.where(and_(*filters))
    total = await _count(s, stmt)
    rows = (await s.execute(stmt.order_by(Item.created_at.desc(), Item.id)
                            .limit(limit).offset(offset))).scalars().all()
    return ItemPage(items=[ItemSummary.model_validate(r) for r in rows], total=total,
                    limit=limit, offset=offset)


@router.get("/audit/journal", response_model=AuditPage, tags=["audit"])
async def audit_journal(s: Session, _: Auditor, case_number: str | None = None,
                        unit: str | None = None, item_id: uuid.UUID | None = None,
                        action: str | None = None, date_from: datetime | None = None,
                        date_to: datetime | None = None, limit: Limit = 100,
                        offset: Offset = 0) -> AuditPage:
    stmt = entry_filters(item_id=item_id, case_number=case_number, unit=unit, action=action,
                         date_from=date_from, date_to=date_to)
    total = await _count(s, stmt)
    rows = (await s.execute(stmt.order_by(AuditEntry.seq).limit(limit).offset(offset))
            ).scalars().all()
    return AuditPage(entries=[AuditOut.model_validate(r) for r in rows], total=total,
                     limit=limit, offset=offset)


@router.get("/audit/verify", response_model=VerifyOut, tags=["audit"])
async def audit_verify(s: Session, _: Auditor) -> VerifyOut:
    result = await audit.verify(s)
    return VerifyOut(ok=result.ok, checked=result.checked, first_bad_seq=result.first_bad_seq,
                     message=result.message)
