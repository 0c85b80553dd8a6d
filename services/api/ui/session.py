"""The /ui session: a signed, HttpOnly cookie naming the API key signed in with, plus a CSRF
token for the session.

The cookie holds the key's id (never the key) and is checked on every request: a revoked key
ends its sessions at once, and the principal is built from the key row exactly as the API's
`current_principal` builds it. The signature is HMAC-SHA256 over the payload.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import find_key
from shared.db.models import ApiKey
from shared.settings import Settings

from ..deps import Principal

COOKIE = "pf_ui"
_process_secret = secrets.token_bytes(32)


class LoginRequired(Exception):
    """No valid session: the page answers with a redirect to the sign-in page."""


@dataclass(frozen=True)
class UiSession:
    key_id: str  # an API key's id; empty for an OIDC sign-in
    csrf: str
    expires: float
    # An OIDC sign-in: the principal the issuer's access token named (checked at sign-in;
    # the session ends when the token would have expired).
    oidc: dict[str, Any] | None = None


def _secret(settings: Settings) -> bytes:
    configured = settings.ui_session_secret
    return configured.get_secret_value().encode() if configured else _process_secret


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(settings: Settings, session: UiSession) -> str:
    payload = _b64(json.dumps(session.__dict__, separators=(",", ":")).encode())
    mac = hmac.new(_secret(settings), payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}"


def decode(settings: Settings, cookie: str | None, *, now: float | None = None
           ) -> UiSession | None:
    """The session in a cookie, or None when it is missing, tampered with or expired."""
    if not cookie or cookie.count(".") != 1:
        return None
    payload, mac = cookie.split(".")
    good = hmac.new(_secret(settings), payload.encode(), hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(good, _unb64(mac)):
            return None
        data = json.loads(_unb64(payload))
        oidc = data.get("oidc")
        session = UiSession(str(data["key_id"]), str(data["csrf"]), float(data["expires"]),
                            dict(oidc) if isinstance(oidc, dict) else None)
    except (ValueError, KeyError, TypeError):
        return None
    return session if session.expires > (now or time.time()) else None


def seal(settings: Settings, data: dict[str, Any]) -> str:
    """A signed (not encrypted) value for a short-lived cookie, e.g. the OIDC login state."""
    payload = _b64(json.dumps(data, separators=(",", ":")).encode())
    mac = hmac.new(_secret(settings), b"seal:" + payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}"


def unseal(settings: Settings, value: str | None) -> dict[str, Any] | None:
    if not value or value.count(".") != 1:
        return None
    payload, mac = value.split(".")
    good = hmac.new(_secret(settings), b"seal:" + payload.encode(), hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(good, _unb64(mac)):
            return None
        data = json.loads(_unb64(payload))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def sign(settings: Settings, text: str) -> str:
    return _b64(hmac.new(_secret(settings), b"notice:" + text.encode(), hashlib.sha256)
                .digest()[:16])


def verify(settings: Settings, text: str, mac: str) -> bool:
    return hmac.compare_digest(sign(settings, text), mac)


def new_session(settings: Settings, key_id: uuid.UUID | None, *,
                oidc: Principal | None = None, until: float | None = None) -> UiSession:
    expires = time.time() + settings.ui_session_hours * 3600
    claims = None
    if oidc is not None:
        claims = {"name": oidc.name, "roles": sorted(oidc.roles), "units": sorted(oidc.units),
                  "forms": sorted(oidc.forms)}
    return UiSession(str(key_id or ""), secrets.token_urlsafe(32),
                     min(expires, until) if until else expires, claims)


def set_cookie(response: Response, settings: Settings, session: UiSession | None) -> None:
    if session is None:
        response.delete_cookie(COOKIE, path="/ui")
        return
    response.set_cookie(COOKIE, encode(settings, session), path="/ui", httponly=True,
                        samesite="lax", secure=settings.ui_secure_cookie,
                        max_age=int(session.expires - time.time()))


def current(request: Request) -> UiSession | None:
    return decode(request.app.state.settings, request.cookies.get(COOKIE))


async def principal(request: Request, s: AsyncSession) -> Principal:
    """The signed-in person, built like `deps.current_principal` builds an API key's."""
    session = current(request)
    if session is None:
        raise LoginRequired
    if session.oidc is not None:
        o = session.oidc
        return Principal(str(o["name"]), frozenset(o["roles"]), frozenset(o["units"]),
                         frozenset(o["forms"]), via="oidc")
    try:
        row = await s.get(ApiKey, uuid.UUID(session.key_id))
    except ValueError:
        raise LoginRequired from None
    if row is None or row.revoked_at is not None:
        raise LoginRequired
    return Principal(row.name, frozenset({row.role}), frozenset(row.units or ()),
                     frozenset(row.forms or ()), via="api-key")


async def sign_in(s: AsyncSession, key: str) -> ApiKey | None:
    return await find_key(s, key.strip()) if key.strip().startswith("pf_") else None


def check_csrf(request: Request, token: str) -> None:
    """Every POST carries the session's token in a hidden field (403 otherwise)."""
    session = current(request)
    if session is None or not token or not hmac.compare_digest(session.csrf, token):
        raise HTTPException(403, "csrf")
