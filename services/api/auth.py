"""OIDC bearer tokens and the administrators' API-key endpoints.

Tokens are JWTs signed by the configured issuer: the signature is checked against the key with
the token's `kid` in the issuer's JWKS (fetched once and cached; an unknown kid refetches, so
key rotation works), then issuer, audience, expiry and not-before. Roles come from a claim
(`roles` by default; a dotted path such as `realm_access.roles` reaches into Keycloak tokens),
clerks' units and form clients' forms from two more. Unknown role names are ignored.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from typing import Any

import jwt
import structlog
from fastapi import APIRouter, Depends, HTTPException
from jwt import PyJWKClient
from sqlalchemy import select

from shared import audit
from shared.auth import Role, create_key, revoke_key
from shared.db.models import ApiKey
from shared.errors import InvalidInput
from shared.settings import Settings

from .deps import Administrator, Principal, Session, current_principal
from .schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    ClerkKeyCreate,
    FormClientKeyCreate,
    Problem,
)

log = structlog.get_logger(__name__)
ROLE_NAMES = frozenset(r.value for r in Role)


class OidcVerifier:
    def __init__(self, settings: Settings) -> None:
        if not settings.oidc_issuer:
            raise ValueError("OIDC needs oidc_issuer")
        self.settings = settings
        self.issuer: str = settings.oidc_issuer
        self._jwks: PyJWKClient | None = None
        self._lock = asyncio.Lock()

    async def _client(self) -> PyJWKClient:
        async with self._lock:
            if self._jwks is None:
                url = self.settings.oidc_jwks_url
                if not url:
                    try:
                        url = await asyncio.to_thread(self._discover)
                    except (OSError, ValueError, KeyError) as exc:
                        log.warning("OIDC discovery failed", error=type(exc).__name__)
                        raise HTTPException(503, "identity provider unavailable") from None
                self._jwks = PyJWKClient(url, cache_jwk_set=True, lifespan=300, timeout=10,
                                         cooldown_duration=self.settings.oidc_jwks_cooldown)
            return self._jwks

    def _discover(self) -> str:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        if not url.startswith(("https://", "http://")):
            raise ValueError("oidc_issuer must be an http(s) URL")
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - checked above
            config = json.load(response)
        if config.get("issuer") != self.issuer:
            raise ValueError("the discovery document names another issuer")
        return str(config["jwks_uri"])

    async def principal(self, token: str) -> Principal | None:
        """The principal a valid token names; None for any invalid token. Raises 503 when the
        issuer's keys cannot be fetched (that is not the caller's fault)."""
        s = self.settings
        try:
            client = await self._client()
            key = await asyncio.to_thread(client.get_signing_key_from_jwt, token)
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=list(s.oidc_algorithms), issuer=self.issuer,
                audience=s.oidc_audience, leeway=s.oidc_leeway,
                options={"require": ["exp", "iss", "sub"],
                         "verify_aud": s.oidc_audience is not None})
        except jwt.PyJWKClientConnectionError as exc:
            log.warning("OIDC keys unavailable", error=type(exc).__name__)
            raise HTTPException(503, "identity provider unavailable") from None
        except (jwt.PyJWTError, OSError, ValueError, KeyError) as exc:
            log.info("bearer token refused", error=type(exc).__name__)
            return None
        roles = frozenset(_strings(_claim(claims, s.oidc_roles_claim))) & ROLE_NAMES
        if not roles:
            return None
        name = str(claims.get(s.oidc_name_claim) or claims["sub"])
        return Principal(name, roles, frozenset(_strings(_claim(claims, s.oidc_units_claim))),
                         frozenset(_strings(_claim(claims, s.oidc_forms_claim))), via="oidc")


def _claim(claims: dict[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return []


router = APIRouter(prefix="/api/v1/apikeys", tags=["access"],
                   dependencies=[Depends(current_principal)],
                   responses={401: {"model": Problem}, 403: {"model": Problem}})


@router.post("", response_model=ApiKeyCreated, status_code=201,
             responses={400: {"model": Problem}})
async def create_api_key(body: ApiKeyCreate, s: Session, admin: Administrator) -> ApiKeyCreated:
    """Issue a key. The key is in this answer only; Postfordeler keeps a hash of it."""
    units = body.units if isinstance(body, ClerkKeyCreate) else []
    forms = body.forms if isinstance(body, FormClientKeyCreate) else []
    try:
        issued = await create_key(s, name=body.name, role=Role(body.role), units=units,
                                  forms=forms)
    except InvalidInput as exc:
        raise HTTPException(400, str(exc)) from None
    await audit.append(s, action="apikey_created", actor=admin.name,
                       details={"key_id": str(issued.id), "prefix": issued.prefix,
                                "name": body.name, "role": Role(body.role).value,
                                "units": sorted(units), "forms": sorted(forms)})
    await s.commit()
    row = await s.get(ApiKey, issued.id)
    assert row is not None
    return ApiKeyCreated(**ApiKeyOut.model_validate(row).model_dump(), key=issued.key)


@router.get("", response_model=list[ApiKeyOut])
async def list_api_keys(s: Session, _: Administrator) -> list[ApiKeyOut]:
    rows = (await s.execute(select(ApiKey).order_by(ApiKey.created_at))).scalars().all()
    return [ApiKeyOut.model_validate(r) for r in rows]


@router.delete("/{key_id}", status_code=204, responses={404: {"model": Problem}})
async def revoke_api_key(key_id: uuid.UUID, s: Session, admin: Administrator) -> None:
    if not await revoke_key(s, key_id):
        raise HTTPException(404, "no such active key")
    await audit.append(s, action="apikey_revoked", actor=admin.name,
                       details={"key_id": str(key_id)})
    await s.commit()
