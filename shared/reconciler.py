"""Re-publishes items stuck in a non-terminal state, so a crash of any process, or of the
in-process bus with its queues, loses nothing. An item still stuck after
`max_attempts` re-publishes is failed with the reason, where a person will see it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

import structlog
from sqlalchemy import select

from shared import metrics
from shared.contracts import TERMINAL_STATES, ItemFailed, ItemState, parse_event
from shared.db.models import Item, OutboxMessage, utcnow
from shared.db.uow import UnitOfWorkFactory
from shared.outbox import OutboxRelay

log = structlog.get_logger(__name__)


@dataclass
class Reconciler:
    uow: UnitOfWorkFactory
    relay: OutboxRelay
    stuck_after: float = 120.0
    max_attempts: int = 3

    async def run_once(self, limit: int = 500) -> int:
        """One pass; returns the number of items re-published or failed."""
        cutoff = utcnow() - timedelta(seconds=self.stuck_after)
        terminal = [s.value for s in TERMINAL_STATES]
        async with self.uow() as uow:
            ids = (await uow.session.execute(
                select(Item.id).where(Item.state.not_in(terminal), Item.updated_at < cutoff)
                .order_by(Item.updated_at).limit(limit))).scalars().all()
        touched = 0
        for item_id in ids:
            touched += await self._one(item_id)
        return touched

    async def _one(self, item_id: uuid.UUID) -> int:
        async with self.uow() as uow:
            item = await uow.item(item_id)
            if uow.is_terminal(item):  # moved on since the scan
                return 0
            payload = (await uow.session.execute(
                select(OutboxMessage.payload).where(OutboxMessage.item_id == item.id)
                .order_by(OutboxMessage.created_at.desc()).limit(1))).scalar_one_or_none()
            if payload is None or item.reconcile_attempts >= self.max_attempts:
                reason = (f"stuck in state {item.state!r} after {item.reconcile_attempts} "
                          "re-publishes" if payload else f"no event found for state {item.state!r}")
                item.failure_reason = reason
                failed = ItemFailed(correlation_id=item.correlation_id, item_id=item.id,
                                    producer="reconciler", stage=item.state, reason=reason)
                uow.transition(item, ItemState.FAILED, reason=reason, event=failed)
                uow.emit(failed)
                await uow.commit()
                await self.relay.publish(uow.emitted)
                log.warning("stuck item failed", item_id=str(item.id), reason=reason)
                return 1
            item.reconcile_attempts += 1
            item.updated_at = utcnow()
            await uow.commit()
        event = parse_event(payload)
        await self.relay.publish([event])
        metrics.REPUBLISHED.inc()
        log.info("re-published stuck item", item_id=str(item_id), state=item.state,
                 topic=event.topic)
        return 1

