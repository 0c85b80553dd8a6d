"""OAuth2 access tokens for mailboxes: app-only client credentials (RFC 6749 section 4.4, as
Entra ID does it for Graph and Exchange Online IMAP), or a token from an environment variable.

Tokens are cached until shortly before they expire; the secret never appears in logs. Shared by
the services that talk to mailboxes: ingest reads them, delivery writes into units' folders.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import httpx

from shared.errors import ConfigurationError, TransientError
from shared.tenant import OAuth2Config

EARLY = 60.0  # renew this many seconds before expiry, so a token never dies mid-request


def xoauth2_string(user: str, token: str) -> str:
    """The SASL XOAUTH2 initial response (before base64), as Google and Microsoft define it."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


@dataclass
class _Cached:
    token: str
    expires: float


class TokenSource:
    """Hands out a valid access token; thread-safe (IMAP and EWS call it from worker threads)."""

    def __init__(self, config: OAuth2Config, *, timeout: float = 30.0) -> None:
        self.config = config
        self.timeout = timeout
        self._cached: _Cached | None = None
        self._lock = threading.Lock()

    def invalidate(self) -> None:
        """Forget the cached token (the server said 401: it was revoked or expired early)."""
        with self._lock:
            self._cached = None

    def _fresh(self) -> str | None:
        cached = self._cached
        if cached is not None and cached.expires - EARLY > time.monotonic():
            return cached.token
        return None

    def _static(self) -> str | None:
        if not self.config.access_token_env:
            return None
        token = os.environ.get(self.config.access_token_env)
        if not token:
            raise ConfigurationError(f"oauth2: ${self.config.access_token_env} is not set")
        return token

    def _request(self) -> tuple[str, dict[str, str]]:
        return self.config.endpoint(), {
            "grant_type": "client_credentials", "client_id": self.config.client_id,
            "client_secret": self.config.client_secret(), "scope": self.config.scope}

    def _accept(self, response: httpx.Response) -> str:
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientError(f"token endpoint answered {response.status_code}")
        if response.status_code != 200:
            # 400/401: wrong client id, secret or scope; error_description says which
            detail = _error(response)
            raise ConfigurationError(f"token endpoint refused: {detail}")
        body = response.json()
        token = str(body["access_token"])
        self._cached = _Cached(token, time.monotonic() + float(body.get("expires_in", 3600)))
        return token

    def token_sync(self) -> str:
        if (static := self._static()) is not None:
            return static
        with self._lock:
            if (token := self._fresh()) is not None:
                return token
            url, form = self._request()
            try:
                response = httpx.post(url, data=form, timeout=self.timeout)
            except httpx.HTTPError as exc:
                raise TransientError(f"token endpoint unreachable: {type(exc).__name__}") from exc
            return self._accept(response)

    async def token(self, client: httpx.AsyncClient) -> str:
        if (static := self._static()) is not None:
            return static
        if (token := self._fresh()) is not None:
            return token
        url, form = self._request()
        try:
            response = await client.post(url, data=form, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise TransientError(f"token endpoint unreachable: {type(exc).__name__}") from exc
        with self._lock:
            return self._accept(response)


def _error(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"{body.get('error')}: {str(body.get('error_description', ''))[:200]}"
    except ValueError:
        return f"HTTP {response.status_code}"
