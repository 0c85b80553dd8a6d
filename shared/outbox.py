"""Publishes events from the transactional outbox: right after commit, and by a sweep that
catches what a crash between commit and publish left behind (duplicates are harmless: every
consumer de-duplicates on the message id).

Marking rows as published is batched: one UPDATE for everything published in the last
`flush_delay` seconds instead of one transaction per event. Marks lost in a crash only mean
that the sweep publishes those events once more.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from datetime import timedelta

import structlog
from sqlalchemy import select, update

from shared.bus import Bus
from shared.contracts import ItemEvent, parse_event
from shared.db.models import OutboxMessage, utcnow
from shared.db.uow import UnitOfWorkFactory

log = structlog.get_logger(__name__)
_CHUNK = 500


class OutboxRelay:
    def __init__(self, uow: UnitOfWorkFactory, bus: Bus, *, flush_delay: float = 0.05) -> None:
        self.uow = uow
        self.bus = bus
        self.flush_delay = flush_delay
        self._unmarked: list[uuid.UUID] = []
        self._flusher: asyncio.Task[None] | None = None

    async def publish(self, events: Sequence[ItemEvent]) -> None:
        if not events:
            return
        await asyncio.gather(*(self.bus.publish(e) for e in events))
        self._unmarked.extend(e.message_id for e in events)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.flush_delay)
        try:
            await self.flush()
        except Exception:  # the sweep re-publishes what stays unmarked
            log.exception("marking outbox rows published failed")

    async def flush(self) -> None:
        """Mark everything published so far (also called on shutdown)."""
        ids, self._unmarked = self._unmarked, []
        for start in range(0, len(ids), _CHUNK):
            async with self.uow() as uow:
                await uow.session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.message_id.in_(ids[start:start + _CHUNK]))
                    .values(published_at=utcnow()))
                await uow.commit()

    async def close(self) -> None:
        # Let a pending flush finish rather than cancel it half-way through a database call:
        # a task cancelled inside the driver can outlive the engine and never complete.
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher
        await self.flush()

    async def sweep(self, older_than: float = 5.0, limit: int = 500) -> int:
        """Publish outbox rows left unpublished for `older_than` seconds; returns how many."""
        await self.flush()
        cutoff = utcnow() - timedelta(seconds=older_than)
        async with self.uow() as uow:
            rows = (await uow.session.execute(
                select(OutboxMessage.payload)
                .where(OutboxMessage.published_at.is_(None), OutboxMessage.created_at < cutoff)
                .order_by(OutboxMessage.created_at).limit(limit))).scalars().all()
        events = [parse_event(p) for p in rows]
        await self.publish(events)
        await self.flush()
        return len(events)
