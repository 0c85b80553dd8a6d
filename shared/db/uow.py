"""Unit of work: one transaction holding a handler's state change, its inbox mark and the
events it emits (the transactional outbox). Events are published only after commit."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from types import TracebackType

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.contracts import TERMINAL_STATES, ItemEvent, ItemState, encode_event
from shared.errors import InvalidInput

from .models import InboxEntry, Item, ItemTransition, OutboxMessage, utcnow


class UnitOfWork:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.emitted: list[ItemEvent] = []
        self._committed = False

    async def __aenter__(self) -> UnitOfWork:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        # close() rolls back anything uncommitted; unlike rollback() it does not expire the
        # objects read, so callers can still use what a read-only unit of work loaded.
        await self.session.close()

    async def commit(self) -> None:
        await self.session.commit()
        self._committed = True

    async def claim(self, consumer: str, message_id: uuid.UUID) -> bool:
        """Record that `consumer` processes `message_id`; False if it already did.

        One INSERT ... ON CONFLICT DO NOTHING: a concurrent redelivery waits for the first
        transaction and then finds the row, so exactly one of them gets True."""
        dialect = self.session.get_bind().dialect.name
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        result = await self.session.execute(
            insert(InboxEntry).values(consumer=consumer, message_id=message_id,
                                      processed_at=utcnow()).on_conflict_do_nothing())
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def emit(self, event: ItemEvent) -> None:
        """Store `event` in the outbox; it is published after commit."""
        self.session.add(OutboxMessage(message_id=event.message_id, item_id=event.item_id,
                                       topic=event.topic, payload=encode_event(event).decode()))
        self.emitted.append(event)

    async def item(self, item_id: uuid.UUID, *, lock: bool = True) -> Item:
        stmt = select(Item).where(Item.id == item_id)
        if lock:
            stmt = stmt.with_for_update()
        found = (await self.session.execute(stmt)).scalar_one_or_none()
        if found is None:
            raise InvalidInput(f"unknown item {item_id}")
        return found

    def transition(self, item: Item, to: ItemState, *, reason: str = "",
                   event: ItemEvent | None = None, producer: str = "") -> None:
        """Move `item` to state `to` and record the transition in its history."""
        self.session.add(ItemTransition(
            item_id=item.id, from_state=item.state, to_state=to.value, reason=reason,
            causation_id=event.message_id if event else None,
            producer=event.producer if event and not producer else producer,
        ))
        item.state = to.value
        item.updated_at = utcnow()

    @staticmethod
    def is_terminal(item: Item) -> bool:
        return ItemState(item.state) in TERMINAL_STATES


UnitOfWorkFactory = Callable[[], UnitOfWork]


def uow_factory(sessions: async_sessionmaker[AsyncSession]) -> UnitOfWorkFactory:
    return lambda: UnitOfWork(sessions())
