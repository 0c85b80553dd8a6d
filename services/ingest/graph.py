"""Exchange Online through Microsoft Graph (EWS is being switched off there in 2026-2027).

App-only access (client credentials; the app needs Mail.ReadWrite, best limited to the
municipality's mailboxes with an application access policy). Per poll one delta round over the
inbox folder (`/users/{id}/mailFolders/{id}/messages/delta`, following `@odata.nextLink` to the
`@odata.deltaLink`, which the next poll starts from); raw MIME from `/messages/{id}/$value`;
after the item is committed, `/messages/{id}/move` to the processed or failed folder.

Refs are immutable ids (`Prefer: IdType="ImmutableId"`), so a ref stays the same while the
message waits and after it moves. Throttling (429, and 503 when busy) is honoured by waiting
for Retry-After. Delta only reports changes, so messages seen but not yet taken in are kept in
`_pending` until they are moved; the delta link is saved (see `syncstate`) once every message
it covered has been moved, so a restart resumes with an incremental round.
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

from .syncstate import SyncCursor, SyncStore

log = structlog.get_logger(__name__)

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
MAX_RETRIES = 6
MAX_RETRY_AFTER = 120.0
WELL_KNOWN = {"inbox": "inbox", "": "msgfolderroot"}


class GraphMailbox:
    def __init__(self, config: MailboxConfig, *, timeout: float = 60.0,
                 sync: SyncStore | None = None) -> None:
        if not config.address:
            raise ConfigurationError(f"mailbox {config.name}: graph needs the address (user)")
        self.config = config
        self.name = config.name
        oauth = config.oauth()
        if oauth.scope == OAuth2Config.model_fields["scope"].default:
            oauth = oauth.model_copy(update={"scope": GRAPH_SCOPE})  # the IMAP default
        self._tokens = TokenSource(oauth)
        self._http = httpx.AsyncClient(timeout=timeout)
        self._base = f"{config.graph_url.rstrip('/')}/users/{quote(config.address)}"
        self._folders: dict[str, str] = {}
        self._folder_lock = asyncio.Lock()  # concurrent moves must not create a folder twice
        self._cursor = SyncCursor(sync, config.name, f"graph:{config.graph_url}:"
                                                     f"{config.address.lower()}:{config.folder}")
        self._pending: dict[str, str] = {}  # message id -> receivedDateTime

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        refreshed = False
        for attempt in range(MAX_RETRIES):
            token = await self._tokens.token(self._http)
            headers = {"Authorization": f"Bearer {token}", "Prefer": 'IdType="ImmutableId"'}
            try:
                response = await self._http.request(method, url, headers=headers, **kwargs)
            except httpx.HTTPError as exc:
                raise TransientError(f"graph unreachable: {type(exc).__name__}") from exc
            if response.status_code in (429, 503, 504):
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

    async def _json(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        response = await self._request(method, url, **kwargs)
        if response.status_code >= 400:
            raise _error(response)
        data = response.json()
        assert isinstance(data, dict)
        return data

    async def _folder_id(self, path: str) -> str:
        """The id of the folder at `path` ("INBOX", or "A/B" under the top of the mailbox),
        created when missing."""
        async with self._folder_lock:
            return await self._resolve(path)

    async def _resolve(self, path: str) -> str:
        if path in self._folders:
            return self._folders[path]
        if path.lower() in WELL_KNOWN:
            data = await self._json("GET", f"{self._base}/mailFolders/{WELL_KNOWN[path.lower()]}")
            self._folders[path] = str(data["id"])
            return self._folders[path]
        parent = await self._resolve("")
        for part in path.split("/"):
            name = part.replace("'", "''")
            found = await self._json(
                "GET", f"{self._base}/mailFolders/{parent}/childFolders",
                params={"$filter": f"displayName eq '{name}'"})
            if found["value"]:
                parent = str(found["value"][0]["id"])
                continue
            created = await self._json("POST", f"{self._base}/mailFolders/{parent}/childFolders",
                                       json={"displayName": part})
            log.info("created mailbox folder", mailbox=self.name, folder=path)
            parent = str(created["id"])
        self._folders[path] = parent
        return parent

    async def list_new(self) -> list[str]:
        inbox = await self._folder_id(self.config.folder)
        for folder in (self.config.processed_folder, self.config.failed_folder):
            await self._folder_id(folder)  # created before the first message needs it
        await self._cursor.load()
        await self._cursor.settle(bool(self._pending))  # last round's messages all moved
        url = self._cursor.state or (f"{self._base}/mailFolders/{inbox}/messages/delta"
                                     "?$select=id,receivedDateTime,internetMessageId")
        while True:
            response = await self._request("GET", url)
            if response.status_code == 410 and self._cursor.state:
                # the sync state expired: start over with a full round
                log.info("graph delta state expired", mailbox=self.name)
                self._cursor.state, self._pending = None, {}
                return await self.list_new()
            if response.status_code >= 400:
                raise _error(response)
            page = response.json()
            for row in page.get("value", []):
                if "@removed" in row:
                    self._pending.pop(row["id"], None)
                else:
                    self._pending[row["id"]] = str(row.get("receivedDateTime", ""))
            if next_link := page.get("@odata.nextLink"):
                url = next_link
                continue
            self._cursor.state = page.get("@odata.deltaLink")
            break
        await self._cursor.settle(bool(self._pending))
        # receivedDateTime has whole seconds; within one, the order delta reported them in
        return sorted(self._pending, key=lambda ref: self._pending[ref])

    async def fetch(self, ref: str) -> bytes:
        response = await self._request("GET", f"{self._base}/messages/{quote(ref)}/$value")
        if response.status_code == 404:
            self._pending.pop(ref, None)
            raise TransientError(f"mailbox {self.name}: message {ref} vanished")
        if response.status_code >= 400:
            raise _error(response)
        return response.content

    async def _move(self, ref: str, folder: str) -> None:
        target = await self._folder_id(folder)
        await self._json("POST", f"{self._base}/messages/{quote(ref)}/move",
                         json={"destinationId": target})
        self._pending.pop(ref, None)
        await self._cursor.settle(bool(self._pending))

    async def mark_processed(self, ref: str) -> None:
        await self._move(ref, self.config.processed_folder)

    async def mark_failed(self, ref: str) -> None:
        await self._move(ref, self.config.failed_folder)

    async def wait(self, interval: float) -> None:
        # Graph change notifications need a public HTTPS endpoint; a delta round is cheap.
        await asyncio.sleep(interval)

    async def close(self) -> None:
        await self._http.aclose()


def _retry_after(response: httpx.Response, attempt: int) -> float:
    try:
        value = float(response.headers.get("Retry-After", ""))
    except ValueError:
        value = 2.0 ** attempt  # no header: back off exponentially
    return max(0.0, min(value, MAX_RETRY_AFTER))


def _error(response: httpx.Response) -> Exception:
    try:
        error = response.json().get("error", {})
        detail = f"{error.get('code')}: {str(error.get('message', ''))[:200]}"
    except ValueError:
        detail = f"HTTP {response.status_code}"
    if response.status_code >= 500:
        return TransientError(f"graph {response.status_code} {detail}")
    return RuntimeError(f"graph {response.status_code} {detail}")
