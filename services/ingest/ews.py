"""Exchange Server on premises through Exchange Web Services (exchangelib).

The main mailbox or a shared one, opened with delegate rights (the service account has full
access to it) or by impersonation (the ApplicationImpersonation role). Per poll one
SyncFolderItems round over the inbox folder, resumed from the SyncState of the last round
(saved in `mailbox_sync` once every message it covered has been moved, see `syncstate`);
GetItem with the MIME content; after the item is committed, MoveItem to the processed or
failed folder (created under the top of the mailbox when missing).

Refs are EWS item ids: stable while the message waits in the inbox (a moved item gets a new
id, which we never need). The connection (shared/ews.py) runs every call in a worker thread,
one at a time per mailbox on the mailbox's own connection.
"""

from __future__ import annotations

import asyncio

import structlog
from exchangelib.errors import ErrorItemNotFound
from exchangelib.properties import ItemId

from shared.errors import TransientError
from shared.ews import EwsConnection
from shared.tenant import MailboxConfig

from .syncstate import SyncCursor, SyncStore

log = structlog.get_logger(__name__)

MAX_CHANGES = 512  # the most SyncFolderItems returns in one answer


class EwsMailbox:
    def __init__(self, config: MailboxConfig, sync: SyncStore | None = None) -> None:
        self._ews = EwsConnection(config, "ingest")  # checks the configuration
        self.config = config
        self.name = config.name
        self._pending: dict[str, str] = {}  # item id -> DateTimeReceived (ISO)
        self._cursor = SyncCursor(sync, config.name, f"ews:{config.address.lower()}:"
                                                     f"{config.folder}")

    # --- operations (in the worker thread) --------------------------------------------------

    def _sync(self, state: str | None) -> tuple[list[tuple[str, str, str]], str | None]:
        inbox = self._ews.folder(self.config.folder)
        for path in (self.config.processed_folder, self.config.failed_folder):
            self._ews.folder(path)  # created before the first message needs it
        changes = []
        for kind, item in inbox.sync_items(sync_state=state, only_fields=["datetime_received"],
                                           max_changes_returned=MAX_CHANGES):
            if kind == "create":
                received = item.datetime_received.isoformat() if item.datetime_received else ""
                changes.append((kind, item.id, received))
            elif kind == "delete":
                changes.append((kind, item.id, ""))
            # updates and read flags do not change what waits in the folder
        return changes, inbox.item_sync_state

    def _fetch(self, ref: str) -> bytes:
        account = self._ews.account()
        [item] = list(account.fetch(ids=[ItemId(id=ref)], only_fields=["mime_content"]))
        if isinstance(item, ErrorItemNotFound):
            self._pending.pop(ref, None)
            raise TransientError(f"mailbox {self.name}: message vanished")
        if isinstance(item, Exception):
            raise item
        if not item.mime_content:
            raise TransientError(f"mailbox {self.name}: no MIME content for a message")
        return bytes(item.mime_content)

    def _move(self, ref: str, path: str) -> None:
        account, folder = self._ews.account(), self._ews.folder(path)
        [result] = account.bulk_move(ids=[ItemId(id=ref)], to_folder=folder) or [None]
        if isinstance(result, ErrorItemNotFound):
            # Not in the inbox any more (moved by an earlier attempt whose answer was lost, or
            # by a person): it cannot be listed again, which is all a move is for.
            log.info("message already gone from the inbox", mailbox=self.name)
        elif isinstance(result, Exception):
            raise result
        self._pending.pop(ref, None)

    # --- Mailbox protocol -------------------------------------------------------------------

    async def list_new(self) -> list[str]:
        state = await self._cursor.load()
        await self._cursor.settle(bool(self._pending))  # last round's messages all moved
        try:
            changes, state = await self._ews.call(self._sync, state)
        except Exception as exc:
            if state is None:
                raise
            # ErrorInvalidSyncStateData (expired, or from another server), which exchangelib
            # may also fail to parse: a full sync lists what is still in the folder, so it is
            # always safe, and a mailbox never sticks on a saved state it cannot use.
            log.warning("ews sync from the saved state failed, full sync", mailbox=self.name,
                        error=type(exc).__name__)
            self._pending.clear()
            changes, state = await self._ews.call(self._sync, None)
        for kind, ref, received in changes:
            if kind == "create":
                self._pending[ref] = received
            else:
                self._pending.pop(ref, None)
        self._cursor.state = state
        await self._cursor.settle(bool(self._pending))
        # DateTimeReceived has whole seconds; within one, the order the sync reported them in
        return sorted(self._pending, key=lambda ref: self._pending[ref])

    async def fetch(self, ref: str) -> bytes:
        return bytes(await self._ews.call(self._fetch, ref))

    async def mark_processed(self, ref: str) -> None:
        await self._ews.call(self._move, ref, self.config.processed_folder)
        await self._cursor.settle(bool(self._pending))

    async def mark_failed(self, ref: str) -> None:
        await self._ews.call(self._move, ref, self.config.failed_folder)
        await self._cursor.settle(bool(self._pending))

    async def wait(self, interval: float) -> None:
        # EWS push/streaming notifications need a listener; a sync round is cheap.
        await asyncio.sleep(interval)

    async def close(self) -> None:
        await self._ews.close()

