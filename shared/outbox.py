"""Publishes events from the transactional outbox: right after commit, and by a sweep that
catches what a crash between commit and publish left behind (duplicates are harmless: every
consumer de-duplicates on the message id)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import select, update

from shared.bus import Bus
from shared.contracts import ItemEvent, parse_event
from shared.db.models import OutboxMessage, utcnow
from shared.db.uow import UnitOfWorkFactory


class OutboxRelay:
    def __init__(self, uow: UnitOfWorkFactory, bus: Bus) -> None:
        self.uow = uow
        self.bus = bus

    async def publish(self, events: Sequence[ItemEvent]) -> None:
        if not events:
            return
        await asyncio.gather(*(self.bus.publish(e) for e in events))
        async with self.uow() as uow:
            await uow.session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.message_id.in_([e.message_id for e in events]))
                .values(published_at=utcnow()))
            await uow.commit()

    async def sweep(self, older_than: float = 5.0, limit: int = 500) -> int:
        """Publish outbox rows left unpublished for `older_than` seconds; returns how many."""
        cutoff = utcnow() - timedelta(seconds=older_than)
        async with self.uow() as uow:
            rows = (await uow.session.execute(
                select(OutboxMessage.payload)
                .where(OutboxMessage.published_at.is_(None), OutboxMessage.created_at < cutoff)
                .order_by(OutboxMessage.created_at).limit(limit))).scalars().all()
        events = [parse_event(p) for p in rows]
        await self.publish(events)
        return len(events)
