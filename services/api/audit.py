"""The audit API: the hash-chained journal log queried by item, case number, unit, clerk,
sender, date range and action, with paging and CSV export; a CPR query for auditors only,
itself written to the audit log (without the number); and an item's receipt status.

Access: every route depends on `current_principal` (the access-control hook); the CPR query
needs the `auditor` role.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared import audit
from shared.db.models import AuditEntry, EsdhCase, Item, Receipt
from shared.personal import cpr_digest
from shared.settings import Settings

from .deps import Principal, current_principal, session
from .schemas import Problem

router = APIRouter(prefix="/api/v1", dependencies=[Depends(current_principal)], tags=["audit"])
Session = Annotated[AsyncSession, Depends(session)]
Caller = Annotated[Principal, Depends(current_principal)]
COLUMNS = ("seq", "at", "action", "actor", "item_id", "case_number", "unit", "clerk", "sender",
           "details", "hash")


def _utc(value: datetime) -> datetime:
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC)


def entry_filters(item_id: uuid.UUID | None = None, case_number: str | None = None,
           unit: str | None = None, clerk: str | None = None, sender: str | None = None,
           action: str | None = None, date_from: datetime | None = None,
           date_to: datetime | None = None) -> Select[Any]:
    stmt = select(AuditEntry)
    for column, value in ((AuditEntry.item_id, item_id), (AuditEntry.case_number, case_number),
                          (AuditEntry.unit, unit), (AuditEntry.clerk, clerk),
                          (AuditEntry.action, action)):
        if value is not None:
            stmt = stmt.where(column == value)
    if sender:
        stmt = stmt.where(func.lower(AuditEntry.sender) == sender.strip().lower())
    if date_from:
        stmt = stmt.where(AuditEntry.at >= _utc(date_from))
    if date_to:
        stmt = stmt.where(AuditEntry.at < _utc(date_to))
    return stmt


Filters = Annotated[Select[Any], Depends(entry_filters)]


def _row(e: AuditEntry) -> dict[str, Any]:
    return {"seq": e.seq, "at": audit.timestamp(e.at), "action": e.action, "actor": e.actor,
            "item_id": str(e.item_id) if e.item_id else None, "case_number": e.case_number,
            "unit": e.unit, "clerk": e.clerk, "sender": e.sender, "details": e.details,
            "hash": e.hash}


async def _page(s: AsyncSession, stmt: Select[Any], limit: int, offset: int
                ) -> dict[str, Any]:
    total = int((await s.execute(select(func.count()).select_from(stmt.subquery())))
                .scalar_one())
    rows = (await s.execute(stmt.order_by(AuditEntry.seq).limit(limit).offset(offset))
            ).scalars().all()
    return {"entries": [_row(r) for r in rows], "total": total, "limit": limit,
            "offset": offset}


@router.get("/audit/entries")
async def entries(s: Session, stmt: Filters, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                  offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> dict[str, Any]:
    return await _page(s, stmt, limit, offset)


@router.get("/audit/entries.csv", response_class=Response, responses={200: {
    "content": {"text/csv": {"schema": {"type": "string"}}},
    "description": f"The matching entries, oldest first, with the columns {', '.join(COLUMNS)}."
}})
async def entries_csv(s: Session, stmt: Filters) -> Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    rows = (await s.execute(stmt.order_by(AuditEntry.seq))).scalars().all()
    for r in rows:
        row = _row(r)
        row["details"] = json.dumps(row["details"], ensure_ascii=False, sort_keys=True)
        writer.writerow([row[c] if row[c] is not None else "" for c in COLUMNS])
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="audit.csv"'})


class CprQuery(BaseModel):
    """The number travels in the body, never in a URL that proxies and access logs record."""

    cpr: Annotated[str, Field(pattern=r"^[0-9]{6}-?[0-9]{4}$",
                              description="A CPR number, with or without the hyphen.")]


@router.post("/audit/cpr")
async def by_cpr(query: CprQuery, request: Request, s: Session, caller: Caller,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                 offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> dict[str, Any]:
    """Entries of the items and cases concerning a CPR number: auditors only, and audited.

    Items are found by the keyed fingerprint the classifier stores with each masked CPR
    entity (setting `cpr_key`); the number itself is stored nowhere."""
    if "auditor" not in caller.roles:
        raise HTTPException(403, "a CPR query is for auditors only")
    settings: Settings = request.app.state.settings
    digits = query.cpr.replace("-", "")
    forms = {digits, f"{digits[:6]}-{digits[6:]}"}
    items: list[uuid.UUID] = []
    if settings.cpr_key is not None:
        digest = cpr_digest(digits, settings.cpr_key.get_secret_value().encode())
        candidates = (await s.execute(select(Item.id, Item.entities).where(Item.personal_data))
                      ).all()
        items = [i for i, ents in candidates if any(
            e.get("kind") == "cpr" and e.get("digest") == digest for e in ents or [])]
    # Cases the person is party to, as the case register records the party.
    cases = list((await s.execute(select(EsdhCase.case_number).where(
        EsdhCase.party.in_(forms)))).scalars())
    stmt = select(AuditEntry).where(or_(AuditEntry.item_id.in_(items),
                                        AuditEntry.case_number.in_(cases)))
    page = await _page(s, stmt, limit, offset)
    await audit.append(s, action="audit_cpr_query", actor=caller.name,
                       details={"items": len(items), "cases": len(cases),
                                "entries": page["total"]})
    await s.commit()
    return page


@router.get("/items/{item_id}/receipt", responses={404: {
    "model": Problem, "description": "No receipt for this item (none due, or not yet)."}})
async def receipt(item_id: uuid.UUID, s: Session) -> dict[str, Any]:
    """Whether the receipt was sent, or is waiting for SMTP (attempts, next try, last error)."""
    row = await s.get(Receipt, item_id)
    if row is None:
        raise HTTPException(404, f"no receipt for item {item_id}")
    return {"item_id": str(item_id), "status": row.status, "message_id": row.message_id,
            "attempts": row.attempts, "sent_at": row.sent_at, "next_attempt_at":
            row.next_attempt_at if row.status == "pending" else None,
            "last_error": row.last_error}
