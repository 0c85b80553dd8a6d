"""Reading an item's events back from the transactional outbox, which keeps every event an
item caused (the API's detail page, the clerk pages, the corrections export)."""

from __future__ import annotations

import uuid
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.contracts import TOPICS, ItemEvent, parse_event

from .models import OutboxMessage

E = TypeVar("E", bound=ItemEvent)


async def latest_event(session: AsyncSession, item_id: uuid.UUID, kind: type[E]) -> E | None:
    """The item's latest event of type `kind` (e.g. the ItemExtracted that was classified),
    or None when there is none."""
    payload = (await session.execute(
        select(OutboxMessage.payload).where(OutboxMessage.item_id == item_id,
                                            OutboxMessage.topic == TOPICS[kind.__name__])
        .order_by(OutboxMessage.created_at.desc()).limit(1))).scalar_one_or_none()
    event = parse_event(payload) if payload else None
    return event if isinstance(event, kind) else None
