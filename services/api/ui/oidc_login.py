"""Sign-in to /ui with the configured OIDC issuer: the authorization code flow with PKCE
(RFC 6749 section 4.1, RFC 7636 S256).

The issuer's access token is checked exactly as the API checks a bearer token
(`auth.OidcVerifier.principal`: signature, issuer, audience, expiry, roles from claims); the
session then holds that principal until the token would have expired. State, PKCE verifier
and the page to return to travel in a signed cookie that lives ten minutes.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import structlog
from fastapi import HTTPException, Request, Response
from fastapi.responses import RedirectResponse

from shared.settings import Settings

from . import session
from .clerk_pages import _login_form, _safe_next
from .web import router

log = structlog.get_logger(__name__)
FLOW_COOKIE = "pf_ui_oidc"
FLOW_SECONDS = 600


def enabled(settings: Settings) -> bool:
    return bool(settings.oidc_issuer and settings.oidc_client_id)


async def _discover(settings: Settings) -> dict[str, Any]:
    url = (settings.oidc_issuer or "").rstrip("/") + "/.well-known/openid-configuration"
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.get(url)
            r.raise_for_status()
            config: dict[str, Any] = r.json()
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("OIDC discovery failed", error=type(exc).__name__)
        raise HTTPException(503, "identity provider unavailable") from None
    if config.get("issuer") != settings.oidc_issuer:
        raise HTTPException(503, "the discovery document names another issuer")
    return config


def _callback(request: Request) -> str:
    return str(request.url_for("oidc_callback"))


@router.get("/login/oidc")
async def oidc_start(request: Request, next: str = "/ui/") -> Response:
    settings: Settings = request.app.state.settings
    if not enabled(settings):
        raise HTTPException(404, "OIDC sign-in is not configured")
    config = await _discover(settings)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()
                                         ).decode().rstrip("=")
    state = secrets.token_urlsafe(24)
    query = urlencode({"response_type": "code", "client_id": settings.oidc_client_id,
                       "redirect_uri": _callback(request), "scope": "openid profile",
                       "state": state, "code_challenge": challenge,
                       "code_challenge_method": "S256"})
    response = RedirectResponse(f"{config['authorization_endpoint']}?{query}", status_code=303)
    response.set_cookie(FLOW_COOKIE, session.seal(settings, {
        "state": state, "verifier": verifier, "next": _safe_next(next),
        "until": time.time() + FLOW_SECONDS}), path="/ui/login", httponly=True,
        samesite="lax", secure=settings.ui_secure_cookie, max_age=FLOW_SECONDS)
    return response


@router.get("/login/oidc/callback", name="oidc_callback")
async def oidc_callback(request: Request, code: str = "", state: str = "",
                        error: str = "") -> Response:
    settings: Settings = request.app.state.settings
    flow = session.unseal(settings, request.cookies.get(FLOW_COOKIE))
    if not enabled(settings) or flow is None or float(flow.get("until", 0)) < time.time() \
            or not state or not secrets.compare_digest(str(flow.get("state")), state):
        raise HTTPException(400, "the sign-in expired or did not start here; try again")
    if error or not code:
        return _login_form(request, str(flow["next"]), 401, error=True, oidc=True)
    token = await _exchange(request, settings, code, str(flow["verifier"]))
    principal = await request.app.state.oidc.principal(token) if token else None
    if principal is None or token is None:  # invalid token, or no role of ours in it
        return _login_form(request, str(flow["next"]), 401, error=True, oidc=True)
    expires = float(jwt.decode(token, options={"verify_signature": False}).get("exp", 0))
    response = RedirectResponse(str(flow["next"]), status_code=303)
    response.delete_cookie(FLOW_COOKIE, path="/ui/login")
    session.set_cookie(response, settings, session.new_session(
        settings, None, oidc=principal, until=expires))
    return response


async def _exchange(request: Request, settings: Settings, code: str,
                    verifier: str) -> str | None:
    config = await _discover(settings)
    data = {"grant_type": "authorization_code", "code": code,
            "redirect_uri": _callback(request), "code_verifier": verifier,
            "client_id": settings.oidc_client_id or ""}
    secret = settings.oidc_client_secret
    # A confidential client authenticates with HTTP Basic (client_secret_basic, the default).
    auth = httpx.BasicAuth(settings.oidc_client_id or "", secret.get_secret_value()) \
        if secret else None
    try:
        async with httpx.AsyncClient(timeout=10, auth=auth) as client:
            r = await client.post(config["token_endpoint"], data=data)
    except httpx.HTTPError as exc:
        log.warning("OIDC token request failed", error=type(exc).__name__)
        raise HTTPException(503, "identity provider unavailable") from None
    if r.status_code != 200:
        log.info("OIDC code refused", status=r.status_code)
        return None
    token = r.json().get("access_token")
    return token if isinstance(token, str) else None
