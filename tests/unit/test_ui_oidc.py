"""Sign-in to /ui with OIDC against a local identity provider that follows the published
protocols: discovery (OpenID Connect Discovery 1.0), the authorization endpoint and the token
endpoint of the authorization code grant (RFC 6749 section 4.1) with PKCE S256 (RFC 7636),
client_secret_basic client authentication, and a JWKS (RFC 7517). The provider signs the
person in at once (no consent screen), as a provider does for a signed-in user."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.integration.test_clerk import ClerkApi
from tests.support.app import app_settings, serve_api

CLIENT, SECRET, AUDIENCE = "postfordeler-ui", "s3cret", "postfordeler"


class Provider:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.claims: dict[str, Any] = {}
        self.codes: dict[str, dict[str, str]] = {}
        self.token_requests: list[dict[str, Any]] = []
        me = self

        class Handler(BaseHTTPRequestHandler):
            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                url = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/.well-known/openid-configuration":
                    self._json(200, {"issuer": me.issuer, "jwks_uri": me.issuer + "/jwks",
                                     "authorization_endpoint": me.issuer + "/authorize",
                                     "token_endpoint": me.issuer + "/token",
                                     "code_challenge_methods_supported": ["S256"]})
                elif url.path == "/jwks":
                    jwk = json.loads(RSAAlgorithm.to_jwk(me.key.public_key()))
                    self._json(200, {"keys": [{**jwk, "kid": "k1", "alg": "RS256"}]})
                elif url.path == "/authorize":
                    if q.get("client_id") != CLIENT or q.get("response_type") != "code" \
                            or q.get("code_challenge_method") != "S256":
                        self._json(400, {"error": "invalid_request"})
                        return
                    code = secrets.token_urlsafe(16)
                    me.codes[code] = {"challenge": q["code_challenge"],
                                      "redirect_uri": q["redirect_uri"]}
                    self.send_response(302)
                    self.send_header("Location", q["redirect_uri"] + "?" + urlencode(
                        {"code": code, "state": q["state"]}))
                    self.end_headers()
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                me.token_requests.append(form)
                basic = base64.b64encode(f"{CLIENT}:{SECRET}".encode()).decode()
                if self.headers.get("Authorization") != f"Basic {basic}":
                    self._json(401, {"error": "invalid_client"})
                    return
                grant = me.codes.pop(form.get("code", ""), None)  # a code works once
                digest = base64.urlsafe_b64encode(hashlib.sha256(
                    form.get("code_verifier", "").encode()).digest()).decode().rstrip("=")
                if grant is None or form.get("grant_type") != "authorization_code" \
                        or form.get("redirect_uri") != grant["redirect_uri"] \
                        or digest != grant["challenge"]:
                    self._json(400, {"error": "invalid_grant"})
                    return
                now = int(time.time())
                token = jwt.encode({"iss": me.issuer, "aud": AUDIENCE, "sub": "u1",
                                    "iat": now, "exp": now + 300, **me.claims},
                                   me.key, algorithm="RS256", headers={"kid": "k1"})
                self._json(200, {"access_token": token, "token_type": "Bearer",
                                 "expires_in": 300})

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def provider() -> Iterator[Provider]:
    p = Provider()
    thread = threading.Thread(target=p.server.serve_forever, daemon=True)
    thread.start()
    yield p
    p.server.shutdown()
    p.server.server_close()


@pytest.fixture
async def api(sqlite_url: str, tmp_path: Path, provider: Provider) -> AsyncIterator[ClerkApi]:
    settings = app_settings(sqlite_url, tmp_path, oidc_issuer=provider.issuer,
                            oidc_audience=AUDIENCE, oidc_client_id=CLIENT,
                            oidc_client_secret=SECRET)
    async with serve_api(ClerkApi, settings) as api:
        api.routed = []
        yield api


async def _sign_in(api: ClerkApi, next_page: str = "/ui/items") -> httpx.Response:
    """The browser's part: to the provider and back with the code."""
    start = await api.client.get("/ui/login/oidc", params={"next": next_page})
    assert start.status_code == 303
    async with httpx.AsyncClient() as browser:
        authorize = await browser.get(start.headers["location"])
    assert authorize.status_code == 302
    back = urlsplit(authorize.headers["location"])
    return await api.client.get(f"{back.path}?{back.query}")


async def test_oidc_sign_in_gives_the_tokens_roles_and_units(api: ClerkApi,
                                                             provider: Provider) -> None:
    login = await api.client.get("/ui/login")
    assert 'id="oidc"' in login.text
    mine = await api.mail("parkering", subject="Parkeringsafgift")
    other = await api.mail("byggeri", subject="Carport")
    provider.claims = {"roles": ["clerk"], "units": ["parkering"],
                       "preferred_username": "LKJ"}
    done = await _sign_in(api)
    assert done.status_code == 303 and done.headers["location"] == "/ui/items"
    page = (await api.client.get("/ui/items")).text
    assert "Parkeringsafgift" in page and "Carport" not in page and "LKJ" in page
    assert (await api.client.get(f"/ui/items/{other}")).status_code == 404
    assert (await api.client.get(f"/ui/items/{mine}")).status_code == 200
    assert (await api.client.get("/ui/rules")).status_code == 403
    verifier = provider.token_requests[-1]["code_verifier"]
    assert len(verifier) >= 43  # RFC 7636: 43 to 128 characters


async def test_oidc_without_our_roles_or_with_a_forged_state_is_refused(
        api: ClerkApi, provider: Provider) -> None:
    provider.claims = {"roles": ["something-else"]}
    refused = await _sign_in(api)
    assert refused.status_code == 401 and 'id="oidc-error"' in refused.text
    assert (await api.client.get("/ui/items")).status_code == 303  # still signed out
    provider.claims = {"roles": ["auditor"]}
    start = await api.client.get("/ui/login/oidc")
    async with httpx.AsyncClient() as browser:
        authorize = await browser.get(start.headers["location"])
    code = parse_qs(urlsplit(authorize.headers["location"]).query)["code"][0]
    forged = await api.client.get("/ui/login/oidc/callback",
                                  params={"code": code, "state": "not-the-state"})
    assert forged.status_code == 400
    api.client.cookies.clear()  # a callback without the flow cookie did not start here
    assert (await api.client.get("/ui/login/oidc/callback",
                                 params={"code": code, "state": "x"})).status_code == 400
