"""What every /ui page shares: the router, templates, the language, the signed-in principal
and error pages.

Pages call the API's own functions and dependencies (`require(...)` for roles, the items
queries for unit scopes), so the interface can never show more than the API would. An
HTTPException from them becomes an HTML page with the same status; no session becomes a
redirect to the sign-in page.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute, APIRouter
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.ext.asyncio import AsyncSession

from ..deps import Principal, require
from . import session
from .i18n import LANGUAGES, translate

HERE = Path(__file__).parent
env = Environment(loader=FileSystemLoader(HERE / "templates"),
                  autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
LANG_COOKIE = "pf_lang"


def lang(request: Request) -> str:
    chosen = request.cookies.get(LANG_COOKIE, "da")
    return chosen if chosen in LANGUAGES else "da"


def render(request: Request, template: str, code: int = 200, *,
           principal: Principal | None = None, **context: Any) -> HTMLResponse:
    language = lang(request)
    ui = session.current(request)
    html = env.get_template(template).render(
        request=request, lang=language, principal=principal, oidc_enabled=bool(
            request.app.state.settings.oidc_issuer and request.app.state.settings.oidc_client_id),
        csrf=ui.csrf if ui else "", path=request.url.path, notice=notice(request),
        _=lambda text, **kw: translate(language, text, **kw), **context)
    return HTMLResponse(html, status_code=code, headers={
        "Cache-Control": "no-store", "X-Frame-Options": "DENY",
        "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                   "style-src 'self'; script-src 'self'; frame-ancestors 'none'",
        "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"})


def back(request: Request, url: str, notice: str = "") -> RedirectResponse:
    """Post/redirect/get: a changing form answers with a redirect (and a notice to show).
    The notice is signed, so a link from elsewhere cannot put its own words on a page."""
    if notice:
        url += ("&" if "?" in url else "?") + "notice=" + quote(notice) + "&n=" + \
            session.sign(request.app.state.settings, notice)
    return RedirectResponse(url, status_code=303)


def notice(request: Request) -> str:
    text = request.query_params.get("notice", "")
    mac = request.query_params.get("n", "")
    return text if text and session.verify(request.app.state.settings, text, mac) else ""


class UiRoute(APIRoute):
    """Renders refusals and errors as pages, and sends people without a session to sign in."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except session.LoginRequired:
                target = quote(request.url.path + (f"?{request.url.query}"
                                                   if request.url.query else ""))
                return RedirectResponse(f"/ui/login?next={target}", status_code=303)
            except HTTPException as exc:
                return render(request, "error.html", exc.status_code,
                              status=exc.status_code, detail=str(exc.detail))
            except RequestValidationError:  # a malformed id or number in the address
                return render(request, "error.html", 404, status=404, detail="")

        return route


router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)


async def who(request: Request, s: AsyncSession, *roles: str) -> Principal:
    """The signed-in principal, admitted by the API's own `require(*roles)` dependency."""
    p = await session.principal(request, s)
    admitted: Principal = await require(*roles)(p)
    return admitted
