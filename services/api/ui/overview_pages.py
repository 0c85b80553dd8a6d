"""The auditors' audit search (filters, CSV, the hash-chain check) and the dashboard.

The dashboard counts only items the signed-in person may see (the API's `visible` clause)
and draws its charts as inline SVG on the server: no script, and each chart carries its
numbers as text for screen readers.
"""

from __future__ import annotations

import statistics
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import Query, Request, Response
from sqlalchemy import func, select

from shared import audit
from shared.auth import Role
from shared.db.models import Item, ItemTransition

from .. import deadletters
from ..audit import _page, entries_csv, entry_filters
from ..deps import Session
from ..routes import tenant, visible
from .clerk_pages import PAGE, READERS, _pages
from .web import render, router, who

DECIDED = ("routed", "triage", "not_relevant", "failed")


def _day(text: str, *, end: bool = False) -> datetime | None:
    try:
        value = date.fromisoformat(text.strip())
    except ValueError:  # empty or not a date: no bound
        return None
    start = datetime(value.year, value.month, value.day, tzinfo=UTC)
    return start + timedelta(days=1) if end else start


def _filters(item_id: str, case_number: str, unit: str, clerk: str, sender: str, action: str,
             date_from: str, date_to: str) -> Any:
    try:
        item = uuid.UUID(item_id) if item_id.strip() else None
    except ValueError:
        item = uuid.UUID(int=0)  # not an id: matches nothing, like an unknown one
    return entry_filters(item_id=item, case_number=case_number or None, unit=unit or None,
                         clerk=clerk or None, sender=sender or None, action=action or None,
                         date_from=_day(date_from), date_to=_day(date_to, end=True))


Opt = Annotated[str, Query(max_length=320)]


@router.get("/audit")
async def audit_page(request: Request, s: Session, item_id: Opt = "", case_number: Opt = "",
                     unit: Opt = "", clerk: Opt = "", sender: Opt = "", action: Opt = "",
                     date_from: Opt = "", date_to: Opt = "",
                     offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> Response:
    p = await who(request, s, Role.AUDITOR)
    stmt = _filters(item_id, case_number, unit, clerk, sender, action, date_from, date_to)
    page = await _page(s, stmt, PAGE, offset)
    chain = await audit.verify(s)
    query = {"item_id": item_id, "case_number": case_number, "unit": unit, "clerk": clerk,
             "sender": sender, "action": action,
             "date_from": date_from, "date_to": date_to}
    return render(request, "audit.html", principal=p, entries=page["entries"], query=query,
                  pages=_pages(page["total"], offset), chain=chain)


@router.get("/audit.csv")
async def audit_csv(request: Request, s: Session, item_id: Opt = "", case_number: Opt = "",
                    unit: Opt = "", clerk: Opt = "", sender: Opt = "", action: Opt = "",
                    date_from: Opt = "", date_to: Opt = "") -> Response:
    await who(request, s, Role.AUDITOR)
    return await entries_csv(s, _filters(item_id, case_number, unit, clerk, sender, action,
                                         date_from, date_to))


def bars(rows: list[tuple[str, int]], *, width: int = 420, row: int = 26) -> dict[str, Any]:
    """Geometry of a horizontal bar chart: label, value and bar width per row."""
    top = max((v for _, v in rows), default=0) or 1
    return {"width": width + 230, "height": row * len(rows) + 4, "row": row,
            "bars": [{"label": label, "value": value, "y": i * row + 2,
                      "w": round(width * value / top)} for i, (label, value) in
                     enumerate(rows)]}


def outcome(state: str, decision: dict[str, Any] | None, fallback: str) -> str | None:
    """Routed automatically, abstained (triage) or failed; None while still in the pipeline.
    An item a person assigned out of the triage queue (the fallback unit) still counts as
    abstained: the machine did not route it."""
    d = decision or {}
    if state == "failed":
        return "failed"
    if state == "triage" or d.get("outcome") == "triage" or \
            (d.get("rerouted") and d["rerouted"].get("from_unit") in (None, fallback)):
        return "triage"
    if d.get("outcome") in ("routed", "not_relevant"):
        return "auto"
    return None


@router.get("/")
async def dashboard(request: Request, s: Session) -> Response:
    p = await who(request, s, *READERS)
    seen = visible(p, tenant(request))
    channels = (await s.execute(select(Item.channel, func.count()).where(seen)
                                .group_by(Item.channel).order_by(Item.channel))).all()
    since = datetime.now(UTC) - timedelta(days=1)
    recent = (await s.execute(select(Item.id, Item.state, Item.decision, Item.created_at)
                              .where(seen, Item.created_at >= since))).all()
    fallback = tenant(request).fallback_unit
    outcomes = Counter(o for _, st, d, _ in recent if (o := outcome(st, d, fallback)))
    hours = Counter(int((_aware(at) - since).total_seconds() // 3600) for *_, at in recent)
    decided = dict((await s.execute(
        select(ItemTransition.item_id, func.min(ItemTransition.at))
        .join(Item, Item.id == ItemTransition.item_id)
        .where(seen, Item.created_at >= since, ItemTransition.to_state.in_(DECIDED))
        .group_by(ItemTransition.item_id))).all())
    created = {i: at for i, _, _, at in recent}
    waits = sorted((_aware(decided[i]) - _aware(created[i])).total_seconds()
                   for i in decided if i in created)
    latency = None
    if waits:
        latency = {"median": round(statistics.median(waits), 1), "n": len(waits),
                   "p95": round(waits[min(len(waits) - 1, int(len(waits) * 0.95))], 1)}
    depth = None
    if p.has(Role.ADMINISTRATOR):
        depth = (await deadletters.list_dead_letters(request, p, consumer=None,
                                                     limit=1000)).depth
    return render(request, "dashboard.html", principal=p,
                  channels=bars([(c, int(n)) for c, n in channels]),
                  outcomes=bars([("Fordelt automatisk", outcomes["auto"]),
                                 ("Til triage", outcomes["triage"]),
                                 ("Fejlet", outcomes["failed"])]),
                  per_hour=bars([(f"-{24 - h} t", hours.get(h, 0)) for h in range(24)],
                                row=16),
                  latency=latency, depth=depth,
                  **hourly(since, {i: _aware(at) for i, at in created.items()},
                           {i: _aware(at) for i, at in decided.items()}))


def hourly(since: datetime, created: dict[Any, datetime], decided: dict[Any, datetime]
           ) -> dict[str, Any]:
    """Per hour of the last day: the median seconds to a decision of the items that came in
    that hour, and the items waiting for a decision at the end of the hour (the pipeline's
    queue, from the database: items in, not yet routed, sent to triage or failed)."""
    latency, waiting = [], []
    for h in range(24):
        start, end = since + timedelta(hours=h), since + timedelta(hours=h + 1)
        waits = [(decided[i] - at).total_seconds() for i, at in created.items()
                 if start <= at < end and i in decided]
        latency.append((f"-{24 - h} t", round(statistics.median(waits)) if waits else 0))
        waiting.append((f"-{23 - h} t", sum(1 for i, at in created.items() if at < end and (
            i not in decided or decided[i] >= end))))
    return {"latency_hours": bars(latency, row=16), "queue_hours": bars(waiting, row=16)}


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
