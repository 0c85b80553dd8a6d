"""Sign-in, the clerks' pages (my unit's items, one item, claim, release, done, re-route) and
the triage team's queue. Every action calls the clerk API's own function with the signed-in
principal, so the rules (own units only, sensitive units, states) are the API's."""

from __future__ import annotations

import secrets
import uuid
from typing import Annotated, Any

from fastapi import Form, HTTPException, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from shared.auth import Role
from shared.contracts import ItemClassified, ItemState
from shared.db.events import latest_event

from .. import clerk
from ..deps import Session
from ..routes import blobs, detail, list_items, tenant, visible_item
from ..schemas import Reroute
from . import session
from .i18n import LANGUAGES, translate
from .web import LANG_COOKIE, back, lang, render, router, who

READERS = (Role.CLERK, Role.ADMINISTRATOR, Role.AUDITOR)
PAGE = 25
Csrf = Annotated[str, Form()]


def _safe_next(target: str) -> str:
    # Only a path of this interface: never an open redirect to another site.
    return target if target.startswith("/ui") and not target.startswith("//") else "/ui/"


PRE = "pf_ui_pre"  # the sign-in form's CSRF token, before there is a session


def _login_form(request: Request, next: str, code: int = 200, **extra: Any) -> Response:
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", code, next=_safe_next(next), login_csrf=token,
                      **extra)
    response.set_cookie(PRE, token, path="/ui/login", httponly=True, samesite="strict",
                        secure=request.app.state.settings.ui_secure_cookie, max_age=3600)
    return response


@router.get("/login")
async def login_page(request: Request, next: str = "/ui/") -> Response:
    return _login_form(request, next, error=False)


@router.post("/login")
async def login(request: Request, s: Session, key: Annotated[str, Form()],
                next: Annotated[str, Form()] = "/ui/", csrf: Annotated[str, Form()] = ""
                ) -> Response:
    # Double-submit token: another site cannot sign a browser in with the other site's key.
    pre = request.cookies.get(PRE, "")
    if not pre or not secrets.compare_digest(pre, csrf):
        raise HTTPException(403, "csrf")
    row = await session.sign_in(s, key)
    if row is None:
        return _login_form(request, next, 401, error=True)
    response = RedirectResponse(_safe_next(next), status_code=303)
    session.set_cookie(response, request.app.state.settings,
                       session.new_session(request.app.state.settings, row.id))
    return response


@router.post("/logout")
async def logout(request: Request, csrf: Csrf) -> Response:
    session.check_csrf(request, csrf)
    response = RedirectResponse("/ui/login", status_code=303)
    session.set_cookie(response, request.app.state.settings, None)
    return response


@router.get("/lang/{code}")
async def choose_language(code: str, next: str = "/ui/") -> Response:
    response = RedirectResponse(_safe_next(next), status_code=303)
    if code in LANGUAGES:
        response.set_cookie(LANG_COOKIE, code, path="/ui", samesite="lax",
                            max_age=365 * 86400)
    return response


def _pages(total: int, offset: int) -> dict[str, Any]:
    return {"total": total, "offset": offset, "page": PAGE,
            "first": offset + 1 if total else 0, "last": min(offset + PAGE, total),
            "prev": max(offset - PAGE, 0) if offset else None,
            "next": offset + PAGE if offset + PAGE < total else None}


@router.get("/items")
async def items_page(request: Request, s: Session, state: str | None = None,
                     subject: str | None = None, unit: str | None = None, mine: bool = False,
                     unclaimed: bool = False,
                     offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> Response:
    p = await who(request, s, *READERS)
    page = await list_items(s, p, request, state=state or None, unit=unit or None,
                            subject=subject or None, mine=mine, unclaimed=unclaimed,
                            limit=PAGE, offset=offset)
    filters = {"state": state or "", "subject": subject or "", "unit": unit or "",
               "mine": mine, "unclaimed": unclaimed}
    return render(request, "items.html", principal=p, page=page.items,
                  pages=_pages(page.total, offset), filters=filters,
                  states=[st.value for st in ItemState], units=_units(request, p))


def _units(request: Request, p: Any) -> list[tuple[str, str]]:
    """Units for a filter: a clerk's own; everyone else every unit."""
    units = tenant(request).units.values()
    return [(u.id, u.name) for u in units if not p.has(Role.CLERK) or u.id in p.units
            or p.has(Role.ADMINISTRATOR, Role.AUDITOR)]


async def _prediction(s: Session, item_id: uuid.UUID) -> ItemClassified | None:
    return await latest_event(s, item_id, ItemClassified)


@router.get("/items/{item_id}")
async def item_page(item_id: uuid.UUID, request: Request, s: Session) -> Response:
    p = await who(request, s, *READERS)
    await visible_item(s, p, tenant(request), item_id)  # 404 for what the API hides
    item = await detail(s, item_id, blobs(request))
    units = sorted((u.id, u.name) for u in tenant(request).units.values())
    return render(request, "item.html", principal=p, item=item, units=units,
                  triage=tenant(request).fallback_unit,  # back to manual triage
                  prediction=await _prediction(s, item_id),
                  can_act=p.has(Role.CLERK))


def _api_item(action: str) -> Any:
    return {"claim": clerk.claim, "release": clerk.release, "done": clerk.mark_done}[action]


NOTICES = {"claim": "Posten er taget.", "release": "Posten er sluppet.",
           "done": "Posten er færdig."}


@router.post("/items/{item_id}/{action}")
async def item_action(item_id: uuid.UUID, action: str, request: Request, s: Session,
                      csrf: Csrf) -> Response:
    session.check_csrf(request, csrf)
    if action not in NOTICES:
        raise HTTPException(404, "no such action")
    p = await who(request, s, Role.CLERK)
    await _api_item(action)(item_id, s, p, request)
    return back(request, f"/ui/items/{item_id}", translate(lang(request), NOTICES[action]))


@router.post("/items/{item_id}/reroute/to")
async def reroute(item_id: uuid.UUID, request: Request, s: Session, csrf: Csrf,
                  unit: Annotated[str, Form()], reason: Annotated[str, Form()],
                  clerk_initials: Annotated[str, Form()] = "",
                  back_to: Annotated[str, Form()] = "") -> Response:
    session.check_csrf(request, csrf)
    p = await who(request, s, Role.CLERK)
    try:
        body = Reroute(unit=unit, clerk=clerk_initials or None, reason=reason)
    except ValidationError as exc:
        raise HTTPException(400, "; ".join(e["msg"] for e in exc.errors())) from None
    await clerk.reroute(item_id, body, s, p, request)
    # Sent out of the clerk's own units, the item is no longer theirs to see: back to the list.
    target = _safe_next(back_to) if back_to else (
        f"/ui/items/{item_id}" if unit in p.units else "/ui/items")
    return back(request, target, translate(lang(request), "Posten er sendt til {unit}.",
                                           unit=unit))


@router.get("/triage")
async def triage_page(request: Request, s: Session,
                      offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> Response:
    p = await who(request, s, *READERS)
    page = await clerk.triage_queue(s, p, request, limit=PAGE, offset=offset)
    suggestions = {i.id: await _prediction(s, i.id) for i in page.items}
    names = {u.id: u.name for u in tenant(request).units.values()}
    return render(request, "triage.html", principal=p, page=page.items,
                  pages=_pages(page.total, offset), suggestions=suggestions, names=names,
                  can_act=p.has(Role.CLERK))


@router.get("/items/{item_id}/attachments/{index}")
async def attachment(item_id: uuid.UUID, index: int, request: Request, s: Session) -> Response:
    p = await who(request, s, *READERS)
    return await clerk.download_attachment(item_id, index, s, p, request)


@router.get("/items/{item_id}/raw")
async def original(item_id: uuid.UUID, request: Request, s: Session) -> Response:
    p = await who(request, s, *READERS)
    return await clerk.download_original(item_id, s, p, request)
