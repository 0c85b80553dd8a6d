"""One mailbox's connection to Microsoft Graph (Exchange Online), for the ingest adapter
(services/ingest/graph.py) and the delivery folder writer (services/delivery/graph_folder.py).

App-only access: a client-credentials token (shared/oauth.py) for the Graph scope, renewed once
when Graph answers 401 (revoked or expired early). Ids are immutable (`Prefer:
IdType="ImmutableId"`), so a message's id survives a move. Throttling (429, and 503/504 when
busy) is waited out as Retry-After says, a few times. Folders are looked up by path and created
when missing, once per connection.

Making a connection connects nowhere; the first request asks for a token.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import httpx
import structlog

from shared.errors import ConfigurationError, TransientError
from shared.oauth import TokenSource
from shared.tenant import MailboxConfig, OAuth2Config

log = structlog.get_logger(__name__)

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
MAX_RETRIES = 6
MAX_RETRY_AFTER = 120.0
WELL_KNOWN = {"inbox": "inbox", "": "msgfolderroot"}


class GraphConnection:
    """Requests on behalf of one mailbox (`base` is its /users/{address} URL)."""

    def __init__(self, config: MailboxConfig, *, timeout: float = 60.0) -> None:
        if not config.address:
            raise ConfigurationError(f"mailbox {config.name}: graph needs the address (user)")
        self.name = config.name
        oauth = config.oauth()
        if oauth.scope == OAuth2Config.model_fields["scope"].default:
            oauth = oauth.model_copy(update={"scope": GRAPH_SCOPE})  # the IMAP default
        self._tokens = TokenSource(oauth)
        self._http = httpx.AsyncClient(timeout=timeout)
        self.base = f"{config.graph_url.rstrip('/')}/users/{quote(config.address)}"
        self._folders: dict[str, str] = {}
        self._folder_lock = asyncio.Lock()  # concurrent callers must not create a folder twice

    async def request(self, method: str, url: str, *, retry_busy: bool = True,
                      **kwargs: Any) -> httpx.Response:
        """The response once Graph stops throttling; errors are left to the caller. A 429 was
        not carried out and is always retried; a 503/504 may come after Graph did the work,
        so without `retry_busy` (a create that must not happen twice) it is the caller's."""
        refreshed = False
        for attempt in range(MAX_RETRIES):
            token = await self._tokens.token(self._http)
            headers = {"Authorization": f"Bearer {token}", "Prefer": 'IdType="ImmutableId"'}
            try:
                response = await self._http.request(method, url, headers=headers, **kwargs)
            except httpx.HTTPError as exc:
                raise TransientError(f"graph unreachable: {type(exc).__name__}") from exc
            if response.status_code == 429 or (retry_busy and response.status_code in (503, 504)):
                delay = _retry_after(response, attempt)
                log.info("graph throttled", mailbox=self.name, status=response.status_code,
                         retry_after=delay)
                await asyncio.sleep(delay)
                continue
            if response.status_code == 401 and not refreshed:
                self._tokens.invalidate()  # expired or revoked early: one fresh token
                refreshed = True
                continue
            return response
        raise TransientError(f"graph still throttling after {MAX_RETRIES} attempts")

    async def json(self, method: str, url: str, *, retry_busy: bool = True,
                   **kwargs: Any) -> dict[str, Any]:
        """The JSON body of a successful response; an error status raises (see `error`)."""
        response = await self.request(method, url, retry_busy=retry_busy, **kwargs)
        if response.status_code >= 400:
            raise error(response)
        data = response.json()
        assert isinstance(data, dict)
        return data

    async def folder_id(self, path: str) -> str:
        """The id of the folder at `path` ("INBOX", or "A/B" under the top of the mailbox),
        created when missing."""
        async with self._folder_lock:
            return await self._resolve(path)

    async def _resolve(self, path: str) -> str:
        if path in self._folders:
            return self._folders[path]
        if path.lower() in WELL_KNOWN:
            data = await self.json("GET", f"{self.base}/mailFolders/{WELL_KNOWN[path.lower()]}")
            self._folders[path] = str(data["id"])
            return self._folders[path]
        parent = await self._resolve("")
        for part in path.split("/"):
            name = part.replace("'", "''")
            found = await self.json(
                "GET", f"{self.base}/mailFolders/{parent}/childFolders",
                params={"$filter": f"displayName eq '{name}'"})
            if found["value"]:
                parent = str(found["value"][0]["id"])
                continue
            created = await self.json("POST", f"{self.base}/mailFolders/{parent}/childFolders",
                                      json={"displayName": part})
            log.info("created mailbox folder", mailbox=self.name, folder=path)
            parent = str(created["id"])
        self._folders[path] = parent
        return parent

    async def close(self) -> None:
        await self._http.aclose()


def error(response: httpx.Response) -> Exception:
    """The exception for an error response: transient for 5xx, else a RuntimeError with
    Graph's error code and (shortened) message."""
    try:
        body = response.json().get("error", {})
        detail = f"{body.get('code')}: {str(body.get('message', ''))[:200]}"
    except ValueError:
        detail = f"HTTP {response.status_code}"
    if response.status_code >= 500:
        return TransientError(f"graph {response.status_code} {detail}")
    return RuntimeError(f"graph {response.status_code} {detail}")


def _retry_after(response: httpx.Response, attempt: int) -> float:
    try:
        value = float(response.headers.get("Retry-After", ""))
    except ValueError:
        value = 2.0 ** attempt  # no header: back off exponentially
    return max(0.0, min(value, MAX_RETRY_AFTER))
