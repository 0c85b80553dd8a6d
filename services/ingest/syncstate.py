"""Where a mailbox's incremental sync resumes after a restart (EWS SyncState, Graph delta link).

The adapters save a state only when every message it covered has been moved out of the inbox:
a state saved ahead of the messages would skip them after a crash. Losing the state costs a
full sync, which lists only what is still in the folder, so nothing is lost either way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import structlog

from shared.db import UnitOfWork
from shared.db.models import MailboxSync, utcnow

log = structlog.get_logger(__name__)


class SyncStore(Protocol):
    async def load(self, mailbox: str, scope: str) -> str | None:
        """The saved state of `mailbox` if it was saved for the same `scope`, else None."""
        ...

    async def save(self, mailbox: str, scope: str, state: str | None) -> None: ...


class MemorySyncStore:
    """For a mailbox opened without a database (tests, `postfordeler extract`)."""

    def __init__(self) -> None:
        self.states: dict[str, tuple[str, str | None]] = {}

    async def load(self, mailbox: str, scope: str) -> str | None:
        saved_scope, state = self.states.get(mailbox, ("", None))
        return state if saved_scope == scope else None

    async def save(self, mailbox: str, scope: str, state: str | None) -> None:
        self.states[mailbox] = (scope, state)


class DbSyncStore:
    """The `mailbox_sync` table. Best effort on save: a state that is not saved only means a
    longer sync after a restart, and must not stop the mailbox."""

    def __init__(self, uow: Callable[[], UnitOfWork]) -> None:
        self._uow = uow

    async def load(self, mailbox: str, scope: str) -> str | None:
        async with self._uow() as uow:
            row = await uow.session.get(MailboxSync, mailbox)
            return row.state if row is not None and row.scope == scope else None

    async def save(self, mailbox: str, scope: str, state: str | None) -> None:
        try:
            async with self._uow() as uow:
                row = await uow.session.get(MailboxSync, mailbox)
                if row is None:
                    row = MailboxSync(name=mailbox, scope=scope)
                    uow.session.add(row)
                row.scope, row.state, row.updated_at = scope, state, utcnow()
                await uow.commit()
        except Exception as exc:  # e.g. the database is briefly away
            log.warning("could not save mailbox sync state", mailbox=mailbox,
                        error=type(exc).__name__)


class SyncCursor:
    """One mailbox's sync state: loaded once, saved whenever nothing it covered is still
    waiting in the inbox (checked before and after each round)."""

    def __init__(self, store: SyncStore | None, mailbox: str, scope: str) -> None:
        self._store = store or MemorySyncStore()
        self._mailbox, self._scope = mailbox, scope
        self.state: str | None = None
        self._saved: str | None = None
        self._loaded = False

    async def load(self) -> str | None:
        if not self._loaded:
            self.state = self._saved = await self._store.load(self._mailbox, self._scope)
            self._loaded = True
        return self.state

    async def settle(self, pending: bool) -> None:
        if pending or self.state == self._saved:
            return
        await self._store.save(self._mailbox, self._scope, self.state)
        self._saved = self.state
