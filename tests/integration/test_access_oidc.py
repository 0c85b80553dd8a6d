"""OIDC bearer tokens: a local identity provider (discovery document and JWKS over HTTP, as
OpenID Connect Discovery 1.0 and RFC 7517 describe them) with keys made in the test."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.support.app import Api, app_settings, serve_api

AUDIENCE = "postfordeler"


class IdentityProvider:
    """Serves /.well-known/openid-configuration and /jwks.json; keys can be rotated."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.jwks_hits = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": provider.issuer, "jwks_uri": provider.issuer + "/jwks.json",
                            "id_token_signing_alg_values_supported": ["RS256", "ES256"]}
                elif self.path == "/jwks.json":
                    provider.jwks_hits += 1
                    body = {"keys": [provider.public_jwk(kid, key)
                                     for kid, key in provider.keys.items()]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def public_jwk(kid: str, key: Any) -> dict[str, Any]:
        algo = ECAlgorithm if isinstance(key, ec.EllipticCurvePrivateKey) else RSAAlgorithm
        jwk = json.loads(algo.to_jwk(key.public_key()))
        jwk.update(kid=kid, use="sig",
                   alg="ES256" if algo is ECAlgorithm else "RS256")
        return jwk

    def add_rsa(self) -> str:
        kid = uuid.uuid4().hex[:8]
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return kid

    def add_ec(self) -> str:
        kid = uuid.uuid4().hex[:8]
        self.keys[kid] = ec.generate_private_key(ec.SECP256R1())
        return kid

    def token(self, kid: str, *, key: Any = None, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.issuer, "aud": AUDIENCE, "sub": "user-1", "iat": now,
                "exp": now + 300, "preferred_username": "TBN", **claims}
        body = {k: v for k, v in body.items() if v is not None}
        signing = key or self.keys[kid]
        alg = "ES256" if isinstance(signing, ec.EllipticCurvePrivateKey) else "RS256"
        return jwt.encode(body, signing, algorithm=alg, headers={"kid": kid})


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider()
    provider.thread.start()
    try:
        yield provider
    finally:
        provider.server.shutdown()
        provider.server.server_close()


@pytest.fixture
async def api(sqlite_url: str, tmp_path: Path, idp: IdentityProvider) -> AsyncIterator[Api]:
    settings = app_settings(sqlite_url, tmp_path, oidc_issuer=idp.issuer,
                            oidc_audience=AUDIENCE, oidc_leeway=0, oidc_jwks_cooldown=0.5)
    async with serve_api(Api, settings) as api:
        yield api


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_valid_tokens_carry_roles_and_units(api: Api, idp: IdentityProvider) -> None:
    kid, ec_kid = idp.add_rsa(), idp.add_ec()
    parking = await api.item("parkering")
    building = await api.item("byggeri")
    clerk = bearer(idp.token(kid, roles=["clerk"], units=["parkering"]))
    listed = (await api.client.get("/api/v1/items", headers=clerk)).json()
    assert {i["id"] for i in listed["items"]} == {str(parking)}
    assert (await api.client.get(f"/api/v1/items/{building}", headers=clerk)).status_code == 404
    claimed = await api.client.post(f"/api/v1/items/{parking}/claim", headers=clerk)
    assert claimed.status_code == 200 and claimed.json()["claimed_by"] == "TBN"
    assert (await api.client.get("/api/v1/apikeys", headers=clerk)).status_code == 403

    # an EC key, and roles as a space-separated string (as in an OAuth2 `scope`)
    admin = bearer(idp.token(ec_kid, roles="administrator auditor"))
    assert (await api.client.get("/api/v1/apikeys", headers=admin)).status_code == 200
    assert (await api.client.get("/api/v1/audit/journal", headers=admin)).status_code == 200


async def test_invalid_tokens_are_refused(api: Api, idp: IdentityProvider) -> None:
    kid = idp.add_rsa()
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    bad = {
        "foreign signature": idp.token(kid, key=stranger, roles=["administrator"]),
        "expired": idp.token(kid, roles=["administrator"], iat=now - 600, exp=now - 60),
        "not yet valid": idp.token(kid, roles=["administrator"], nbf=now + 600),
        "other issuer": idp.token(kid, roles=["administrator"], iss="https://evil.example"),
        "other audience": idp.token(kid, roles=["administrator"], aud="another-app"),
        "no expiry": idp.token(kid, roles=["administrator"], exp=None),
        "unknown kid": idp.token("nope", key=stranger, roles=["administrator"]),
        "no known role": idp.token(kid, roles=["superuser"]),
        "alg none": jwt.encode({"iss": idp.issuer, "aud": AUDIENCE, "sub": "x",
                                "exp": now + 300, "roles": ["administrator"]}, None,
                               algorithm="none"),
        "hs256 with the public key": _hs256_confusion(idp, kid),
    }
    for why, token in bad.items():
        r = await api.client.get("/api/v1/apikeys", headers=bearer(token))
        assert r.status_code == 401, why
        assert r.json() == {"detail": "authentication required"}, why


def _hs256_confusion(idp: IdentityProvider, kid: str) -> str:
    """An attacker signs with HMAC using the published public key as the secret."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "kid": kid, "typ": "JWT"}).encode())
    payload = b64(json.dumps({"iss": idp.issuer, "aud": AUDIENCE, "sub": "x",
                              "exp": int(time.time()) + 300,
                              "roles": ["administrator"]}).encode())
    public = json.dumps(idp.public_jwk(kid, idp.keys[kid])).encode()
    sig = hmac.new(public, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(sig)}"


async def test_rotated_keys_are_fetched(api: Api, idp: IdentityProvider) -> None:
    first = idp.add_rsa()
    ok = await api.client.get("/api/v1/items", headers=bearer(idp.token(first, roles="auditor")))
    assert ok.status_code == 200
    hits = idp.jwks_hits
    second = idp.add_rsa()  # the provider rotates: the new kid is not in the cached set
    token = idp.token(second, roles="auditor")
    for _ in range(20):  # the client refetches after its cooldown
        r = await api.client.get("/api/v1/items", headers=bearer(token))
        if r.status_code == 200:
            break
        await asyncio.sleep(0.2)
    assert r.status_code == 200
    assert idp.jwks_hits > hits


async def test_identity_provider_down_is_503_not_401(api: Api, idp: IdentityProvider) -> None:
    kid = idp.add_rsa()
    token = idp.token(kid, roles="auditor")
    idp.server.shutdown()
    idp.server.server_close()
    r = await api.client.get("/api/v1/items", headers=bearer(token))
    assert r.status_code == 503 and r.json() == {"detail": "identity provider unavailable"}
