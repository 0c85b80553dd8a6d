"""What clerks do with items: the triage queue, downloads, claim, release, re-route, done.

A re-route is one transaction: the item's unit and history, a correction row (training data),
an audit entry and an ItemRouted event in the outbox, published after commit, so the item is
delivered anew to the new unit (and, coming out of triage, journalised). Only clerks act on
items, and only on items of their own units; the fallback unit's clerks are the triage team.

A re-route to the fallback unit sends the item back to manual triage (a clerk who cannot tell
where it belongs): the same record, with a triage event that delivers nothing, and the item
waits in the triage queue. An item journalised before it went back is not journalised again
when the triage team sends it on (the decision remembers it).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared import audit
from shared.contracts import ItemEvent, ItemRouted, ItemState, JournalAction, RouteOutcome
from shared.db import UnitOfWork
from shared.db.models import Correction, Item, ItemTransition, utcnow
from shared.errors import InvalidInput
from shared.personal import scrub_cpr

from .deps import Clerk, Principal, Reader, Session, current_principal
from .routes import (
    Limit,
    Offset,
    blobs,
    detail,
    extracted,
    list_items,
    tenant,
    visible_item,
)
from .schemas import ItemDetail, ItemPage, Problem, Reroute

router = APIRouter(prefix="/api/v1", tags=["clerk"], dependencies=[Depends(current_principal)],
                   responses={401: {"model": Problem}, 403: {"model": Problem},
                              404: {"model": Problem}})
Publish = Callable[[Sequence[ItemEvent]], Awaitable[None]]
# States a person may send on to another unit: decided ones (not those still in the pipeline).
REROUTABLE = {ItemState.TRIAGE, ItemState.ROUTED, ItemState.JOURNALISED, ItemState.DONE,
              ItemState.NOT_RELEVANT}
FINISHABLE = {ItemState.ROUTED, ItemState.JOURNALISED, ItemState.DONE, ItemState.NOT_RELEVANT}
_BINARY: dict[int | str, dict[str, Any]] = {200: {
    "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
    "description": "The file."}}


def redact(text: str) -> str:
    """Free text from people goes into the audit log and training data: no CPR numbers (the
    shared, deliberately wide pattern: also "010203 1234" and a number next to letters)."""
    return scrub_cpr(text, "[CPR]")


def publisher(request: Request) -> Publish:
    found: Publish = request.app.state.publish
    return found


@router.get("/triage", response_model=ItemPage)
async def triage_queue(s: Session, p: Reader, request: Request, unclaimed: bool = False,
                       date_from: datetime | None = None, date_to: datetime | None = None,
                       limit: Limit = 50, offset: Offset = 0) -> ItemPage:
    """Items nobody could route, for the main-mailbox team (the fallback unit's clerks)."""
    return await list_items(s, p, request, state=ItemState.TRIAGE.value, unclaimed=unclaimed,
                            date_from=date_from, date_to=date_to, limit=limit, offset=offset)


@router.get("/items/{item_id}/attachments/{index}", response_class=Response, responses=_BINARY)
async def download_attachment(item_id: uuid.UUID, index: int, s: Session, p: Reader,
                              request: Request) -> Response:
    await visible_item(s, p, tenant(request), item_id)
    event = await extracted(s, item_id)
    if event is None or not 0 <= index < len(event.attachments):
        raise HTTPException(404, "attachment not found")
    attachment = event.attachments[index]
    return await _file(request, attachment.blob.sha256, attachment.content_type,
                       attachment.filename)


@router.get("/items/{item_id}/raw", response_class=Response, responses=_BINARY)
async def download_original(item_id: uuid.UUID, s: Session, p: Reader,
                            request: Request) -> Response:
    """The original message as received (message/rfc822 for e-mail)."""
    item = await visible_item(s, p, tenant(request), item_id)
    if not item.raw_sha256:
        raise HTTPException(404, "no original stored")
    media = "message/rfc822" if item.channel == "email" else "application/octet-stream"
    return await _file(request, item.raw_sha256, media, f"{item.id}.eml"
                       if item.channel == "email" else str(item.id))


async def _file(request: Request, sha256: str, media_type: str, filename: str) -> Response:
    try:
        data = await blobs(request).get(sha256)
    except InvalidInput:
        raise HTTPException(404, "file no longer stored") from None
    return Response(data, media_type=media_type, headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename, safe='')}",
        "X-Content-Type-Options": "nosniff"})


async def _mine(s: AsyncSession, p: Principal, request: Request, item_id: uuid.UUID) -> Item:
    return await visible_item(s, p, tenant(request), item_id, lock=True)


@router.post("/items/{item_id}/claim", response_model=ItemDetail,
             responses={409: {"model": Problem}})
async def claim(item_id: uuid.UUID, s: Session, p: Clerk, request: Request) -> ItemDetail:
    item = await _mine(s, p, request, item_id)
    if item.claimed_by not in (None, p.name):
        raise HTTPException(409, "claimed by another clerk")
    if item.claimed_by is None:
        item.claimed_by, item.claimed_at = p.name, utcnow()
        await audit.append(s, action="claimed", actor=p.name, item_id=item.id, unit=item.unit,
                           clerk=p.name, details={})
        await s.commit()
    return await detail(s, item_id, blobs(request))


@router.post("/items/{item_id}/release", response_model=ItemDetail,
             responses={409: {"model": Problem}})
async def release(item_id: uuid.UUID, s: Session, p: Clerk, request: Request) -> ItemDetail:
    item = await _mine(s, p, request, item_id)
    if item.claimed_by != p.name:
        raise HTTPException(409, "not claimed by you")
    item.claimed_by = item.claimed_at = None
    await audit.append(s, action="released", actor=p.name, item_id=item.id, unit=item.unit,
                       details={})
    await s.commit()
    return await detail(s, item_id, blobs(request))


@router.post("/items/{item_id}/done", response_model=ItemDetail,
             responses={409: {"model": Problem}})
async def mark_done(item_id: uuid.UUID, s: Session, p: Clerk, request: Request) -> ItemDetail:
    """The clerk has dealt with the item (claiming it if nobody had)."""
    item = await _mine(s, p, request, item_id)
    if ItemState(item.state) not in FINISHABLE:
        raise HTTPException(409, f"an item in state {item.state} cannot be marked done")
    if item.claimed_by not in (None, p.name):
        raise HTTPException(409, "claimed by another clerk")
    if item.handled_at is None:
        now = utcnow()
        item.claimed_by, item.claimed_at = p.name, item.claimed_at or now
        item.handled_by, item.handled_at = p.name, now
        await audit.append(s, action="handled", actor=p.name, item_id=item.id, unit=item.unit,
                           clerk=p.name, case_number=item.case_number, details={})
        await s.commit()
    return await detail(s, item_id, blobs(request))


@router.post("/items/{item_id}/reroute", response_model=ItemDetail,
             responses={400: {"model": Problem}, 409: {"model": Problem}})
async def reroute(item_id: uuid.UUID, body: Reroute, s: Session, p: Clerk,
                  request: Request) -> ItemDetail:
    """Send the item to another unit (or clerk), with the reason. From the triage queue this
    is how the main-mailbox team assigns an item; to the fallback unit (e.g. `hovedpost`) it
    goes back to the triage queue."""
    t = tenant(request)
    item = await _mine(s, p, request, item_id)
    if body.unit == t.fallback_unit:
        return await _back_to_triage(item, body, s, p, request)
    target = t.units.get(body.unit)
    if target is None:
        raise HTTPException(400, "unknown unit")
    if body.clerk is not None and body.clerk not in {c.initials for c in target.clerks}:
        raise HTTPException(400, "unknown clerk for that unit")
    state = ItemState(item.state)
    if state not in REROUTABLE:
        raise HTTPException(409, f"an item in state {item.state} cannot be re-routed yet")
    if (item.unit, item.clerk) == (target.id, body.clerk) and state != ItemState.TRIAGE:
        raise HTTPException(409, "the item is already there")
    reason, from_unit = redact(body.reason.strip()), item.unit
    decision = dict(item.decision or {})
    waiting = state in (ItemState.TRIAGE, ItemState.NOT_RELEVANT)
    fresh = waiting and not decision.get("journalised")  # not yet journalised
    journal = JournalAction.NONE
    if fresh:
        journal = JournalAction.MATCHED_CASE if item.case_number else JournalAction.NEW_CASE
    kle = decision.get("kle") or (target.kle[0] if target.kle else None)
    event = await extracted(s, item.id)
    routed = ItemRouted(
        correlation_id=item.correlation_id, producer=f"clerk:{p.name}", item_id=item.id,
        outcome=RouteOutcome.ROUTED, unit=target.id, clerk=body.clerk,
        case_number=item.case_number, journal=journal, kle=kle,
        receipt=bool(decision.get("receipt", False)) and not decision.get("journalised"),
        reasons=(f"re-routed by {p.name} from {from_unit or 'none'}: {reason}",),
        # A rule's marks stay with the item wherever it goes (forward, ESDH, receipt).
        sensitive=bool(decision.get("sensitive", False)),
        receipt_template=decision.get("receipt_template"))
    s.add(Correction(item_id=item.id, from_unit=from_unit, to_unit=target.id,
                     to_clerk=body.clerk, reason=reason, actor=p.name, decision=item.decision,
                     text_sha256=event.text.sha256 if event else None, at=utcnow()))
    uow = UnitOfWork(s)
    item.unit, item.clerk = target.id, body.clerk
    item.claimed_by = item.claimed_at = item.handled_by = item.handled_at = None
    item.decision = {**decision, "outcome": RouteOutcome.ROUTED.value, "unit": target.id,
                     "clerk": body.clerk, "journal": journal.value, "kle": kle,
                     "rerouted": {"by": p.name, "from_unit": from_unit, "reason": reason}}
    uow.transition(item, ItemState.ROUTED if waiting else state, event=routed,
                   producer=routed.producer,
                   reason=f"re-routed from {from_unit or 'none'} to {target.id}: {reason}")
    uow.emit(routed)
    await audit.append(s, action="rerouted", actor=p.name, item_id=item.id, unit=target.id,
                       clerk=body.clerk, case_number=item.case_number, sender=item.sender,
                       details={"from_unit": from_unit, "to_unit": target.id, "reason": reason,
                                "event_id": str(routed.message_id)})
    await uow.commit()
    await publisher(request)(uow.emitted)
    return await detail(s, item_id, blobs(request))



async def _back_to_triage(item: Item, body: Reroute, s: AsyncSession, p: Principal,
                          request: Request) -> ItemDetail:
    """The item goes back to the triage queue (the fallback unit), with the reason."""
    fallback = tenant(request).fallback_unit
    if body.clerk is not None:
        raise HTTPException(400, "the triage queue is not assigned to a clerk")
    state = ItemState(item.state)
    if state not in REROUTABLE:
        raise HTTPException(409, f"an item in state {item.state} cannot be re-routed yet")
    if state == ItemState.TRIAGE:
        raise HTTPException(409, "the item is already in triage")
    reason, from_unit = redact(body.reason.strip()), item.unit
    decision = dict(item.decision or {})
    journalised = bool(decision.get("journalised")) or await _journalised(s, item.id)
    routed = ItemRouted(
        correlation_id=item.correlation_id, producer=f"clerk:{p.name}", item_id=item.id,
        outcome=RouteOutcome.TRIAGE, unit=fallback, clerk=None,
        case_number=item.case_number, journal=JournalAction.NONE, kle=decision.get("kle"),
        receipt=False,  # the sender had the receipt when the item first came in
        reasons=(f"sent back to triage by {p.name} from {from_unit or 'none'}: {reason}",),
        sensitive=bool(decision.get("sensitive", False)),
        receipt_template=decision.get("receipt_template"))
    event = await extracted(s, item.id)
    s.add(Correction(item_id=item.id, from_unit=from_unit, to_unit=fallback, to_clerk=None,
                     reason=reason, actor=p.name, decision=item.decision,
                     text_sha256=event.text.sha256 if event else None, at=utcnow()))
    uow = UnitOfWork(s)
    item.unit, item.clerk = fallback, None
    item.claimed_by = item.claimed_at = item.handled_by = item.handled_at = None
    item.decision = {**decision, "outcome": RouteOutcome.TRIAGE.value, "unit": fallback,
                     "clerk": None, "journalised": journalised,
                     "rerouted": {"by": p.name, "from_unit": from_unit, "reason": reason,
                                  "to_triage": True}}
    uow.transition(item, ItemState.TRIAGE, event=routed, producer=routed.producer,
                   reason=f"sent back to triage from {from_unit or 'none'}: {reason}")
    uow.emit(routed)
    await audit.append(s, action="rerouted", actor=p.name, item_id=item.id, unit=fallback,
                       case_number=item.case_number, sender=item.sender,
                       details={"from_unit": from_unit, "to_unit": fallback, "reason": reason,
                                "to_triage": True, "event_id": str(routed.message_id)})
    await uow.commit()
    await publisher(request)(uow.emitted)
    return await detail(s, item.id, blobs(request))


async def _journalised(s: AsyncSession, item_id: uuid.UUID) -> bool:
    """Whether the item was ever filed in the ESDH (its history says so)."""
    found = await s.execute(select(ItemTransition.id).where(
        ItemTransition.item_id == item_id,
        ItemTransition.to_state == ItemState.JOURNALISED.value).limit(1))
    return found.first() is not None
