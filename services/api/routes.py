"""The read API: items with their history, the audit journal and its verification."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from shared import audit
from shared.db.models import AuditEntry, Item, Receipt

from .deps import current_principal, session
from .schemas import AuditOut, AuditPage, ItemDetail, ItemPage, ItemSummary, VerifyOut

router = APIRouter(prefix="/api/v1", dependencies=[Depends(current_principal)])
Session = Annotated[AsyncSession, Depends(session)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]


def _utc(value: datetime) -> datetime:
    # Stored as UTC; SQLite compares the text form, so the bound value must be UTC too.
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC)


async def _count(s: AsyncSession, stmt: Select[Any]) -> int:
    return int((await s.execute(select(func.count()).select_from(stmt.subquery()))).scalar_one())


@router.get("/items/{item_id}", response_model=ItemDetail)
async def get_item(item_id: uuid.UUID, s: Session) -> ItemDetail:
    item = (await s.execute(select(Item).where(Item.id == item_id)
                            .options(selectinload(Item.transitions)))).scalar_one_or_none()
    if item is None:
        raise HTTPException(404, f"item {item_id} not found")
    receipt = await s.get(Receipt, item_id)
    return ItemDetail.model_validate({
        **ItemSummary.model_validate(item).model_dump(),
        "correlation_id": item.correlation_id, "decision": item.decision,
        "failure_reason": item.failure_reason, "receipt": receipt.status if receipt else None,
        "history": item.transitions})


@router.get("/items", response_model=ItemPage)
async def list_items(s: Session, state: str | None = None, unit: str | None = None,
                     limit: Limit = 50, offset: Offset = 0) -> ItemPage:
    stmt = select(Item)
    if state:
        stmt = stmt.where(Item.state == state)
    if unit:
        stmt = stmt.where(Item.unit == unit)
    total = await _count(s, stmt)
    rows = (await s.execute(stmt.order_by(Item.created_at.desc(), Item.id)
                            .limit(limit).offset(offset))).scalars().all()
    return ItemPage(items=[ItemSummary.model_validate(r) for r in rows], total=total,
                    limit=limit, offset=offset)


@router.get("/audit/journal", response_model=AuditPage)
async def audit_journal(s: Session, case_number: str | None = None, unit: str | None = None,
                        item_id: uuid.UUID | None = None, action: str | None = None,
                        date_from: datetime | None = None, date_to: datetime | None = None,
                        limit: Limit = 100, offset: Offset = 0) -> AuditPage:
    stmt = select(AuditEntry)
    if case_number:
        stmt = stmt.where(AuditEntry.case_number == case_number)
    if unit:
        stmt = stmt.where(AuditEntry.unit == unit)
    if item_id:
        stmt = stmt.where(AuditEntry.item_id == item_id)
    if action:
        stmt = stmt.where(AuditEntry.action == action)
    if date_from:
        stmt = stmt.where(AuditEntry.at >= _utc(date_from))
    if date_to:
        stmt = stmt.where(AuditEntry.at < _utc(date_to))
    total = await _count(s, stmt)
    rows = (await s.execute(stmt.order_by(AuditEntry.seq).limit(limit).offset(offset))
            ).scalars().all()
    return AuditPage(entries=[AuditOut.model_validate(r) for r in rows], total=total,
                     limit=limit, offset=offset)


@router.get("/audit/verify", response_model=VerifyOut)
async def audit_verify(s: Session) -> VerifyOut:
    result = await audit.verify(s)
    return VerifyOut(ok=result.ok, checked=result.checked, first_bad_seq=result.first_bad_seq,
                     message=result.message)
