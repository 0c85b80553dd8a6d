"""Exchange Online through Microsoft Graph (EWS is being switched off there in 2026-2027).

App-only access (client credentials; the app needs Mail.ReadWrite, best limited to the
municipality's mailboxes with an application access policy). Per poll one delta round over the
inbox folder (`/users/{id}/mailFolders/{id}/messages/delta`, following `@odata.nextLink` to the
`@odata.deltaLink`, which the next poll starts from); raw MIME from `/messages/{id}/$value`;
after the item is committed, `/messages/{id}/move` to the processed or failed folder.

Refs are immutable ids (`Prefer: IdType="ImmutableId"`), so a ref stays the same while the
message waits and after it moves. Token, throttling (Retry-After) and folder look-up are the
connection's (shared/graph.py, shared with delivery's folder writer). Delta only reports
changes, so messages seen but not yet taken in are kept in `_pending` until they are moved;
the delta link is saved (see `syncstate`) once every message it covered has been moved, so a
restart resumes with an incremental round.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import httpx
import structlog

from shared.errors import TransientError
from shared.graph import GraphConnection, error
from shared.tenant import MailboxConfig

from .syncstate import SyncCursor, SyncStore

log = structlog.get_logger(__name__)


class GraphMailbox:
    def __init__(self, config: MailboxConfig, *, timeout: float = 60.0,
                 sync: SyncStore | None = None) -> None:
        self._graph = GraphConnection(config, timeout=timeout)  # refuses a missing address
        self.config = config
        self.name = config.name
        self._base = self._graph.base
        self._cursor = SyncCursor(sync, config.name, f"graph:{config.graph_url}:"
                                                     f"{config.address.lower()}:{config.folder}")
        self._pending: dict[str, str] = {}  # message id -> receivedDateTime

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        # the one place this adapter's own requests pass (a test records the URLs here)
        return await self._graph.request(method, url, **kwargs)

    async def list_new(self) -> list[str]:
        inbox = await self._graph.folder_id(self.config.folder)
        for folder in (self.config.processed_folder, self.config.failed_folder):
            await self._graph.folder_id(folder)  # created before the first message needs it
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
                raise error(response)
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
            raise error(response)
        return response.content

    async def _move(self, ref: str, folder: str) -> None:
        target = await self._graph.folder_id(folder)
        await self._graph.json("POST", f"{self._base}/messages/{quote(ref)}/move",
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
        await self._graph.close()

