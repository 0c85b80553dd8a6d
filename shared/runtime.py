"""What every service process needs: the bus, the database, the blob store, and the plumbing
that makes consumers idempotent and publishing transactional.

A service defines `Consumer`s (a name, topics and a handler that works inside a unit of work);
`Runtime.start_consumer` wires them to the bus with the inbox check, the commit, publishing of
the emitted events after commit, and marking the item failed when a message is dead-lettered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import audit, metrics
from shared.blobs import FileBlobStore
from shared.bus import Bus, RetryPolicy, Subscription, make_bus
from shared.contracts import ItemEvent, ItemFailed, ItemState
from shared.db import UnitOfWork, create_engine, session_factory, uow_factory
from shared.outbox import OutboxRelay
from shared.reconciler import Reconciler
from shared.settings import Settings
from shared.tenant import Tenant

log = structlog.get_logger(__name__)

ConsumerHandler = Callable[[ItemEvent, UnitOfWork], Awaitable[None]]


@dataclass(frozen=True)
class Consumer:
    name: str
    topics: tuple[str, ...]
    handle: ConsumerHandler


class Runtime:
    def __init__(self, settings: Settings, *, bus: Bus | None = None,
                 engine: AsyncEngine | None = None) -> None:
        self.settings = settings
        self.engine = engine or create_engine(
            settings.db_url, **({} if settings.db_url.startswith("sqlite") else {
                "pool_size": settings.db_pool_size, "max_overflow": settings.db_max_overflow}))
        self.uow = uow_factory(session_factory(self.engine))
        self.bus = bus or make_bus(
            settings.amqp_url.get_secret_value(),
            exchange=settings.exchange,
            policy=RetryPolicy(settings.retry_max_attempts, settings.retry_base_delay,
                               settings.retry_max_delay),
            prefetch=settings.prefetch,
            delivery_limit=settings.delivery_limit,
        )
        self.blobs = FileBlobStore(settings.blobs_path)
        self.tenant = Tenant(settings.tenant_dir)
        self.relay = OutboxRelay(self.uow, self.bus)
        self._subscriptions: list[Subscription] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    async def start(self) -> None:
        await self.bus.connect()

    def spawn(self, coro: Awaitable[None], name: str) -> asyncio.Task[None]:
        """Run a background loop (a poller, a sweep) until `stop`; a crash is logged."""
        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background task crashed", task=name)
                raise

        task = asyncio.create_task(guarded(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def start_housekeeping(self, *, reconcile: bool = True) -> None:
        """The outbox sweep and audit chaining (every process) and, where asked, the
        stuck-item reconciler."""
        self.spawn(self.run_periodic(self.settings.relay_interval, self.relay.sweep,
                                     "outbox-sweep"), "outbox-sweep")
        self.spawn(self.run_periodic(self.settings.audit_chain_interval, self.chain_audit,
                                     "audit-chain"), "audit-chain")
        if reconcile:
            reconciler = Reconciler(self.uow, self.relay, self.settings.stuck_after,
                                    self.settings.reconcile_max_attempts)
            self.spawn(self.run_periodic(self.settings.reconcile_interval, reconciler.run_once,
                                         "reconciler"), "reconciler")

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for sub in self._subscriptions:
            await sub.cancel()
        self._subscriptions.clear()
        try:
            await self.chain_audit()
        except Exception:  # chained by the next process that starts
            log.exception("could not chain pending audit entries at shutdown")
        try:
            await self.relay.close()
        except Exception:  # the sweep of the next start re-publishes what stays unmarked
            log.exception("could not mark published outbox rows at shutdown")
        await self.bus.close()
        await self.engine.dispose()

    async def start_consumer(self, consumer: Consumer) -> Subscription:
        async def handler(event: ItemEvent) -> None:
            structlog.contextvars.bind_contextvars(
                item_id=str(event.item_id), correlation_id=str(event.correlation_id),
                consumer=consumer.name)
            started = time.perf_counter()
            try:
                async with self.uow() as uow:
                    if not await uow.claim(consumer.name, event.message_id):
                        log.info("duplicate message skipped", message_id=str(event.message_id))
                        return
                    await consumer.handle(event, uow)
                    await uow.commit()
                await self.relay.publish(uow.emitted)
                metrics.STAGE_SECONDS.labels(consumer.name).observe(time.perf_counter() - started)
                metrics.STAGE_PROCESSED.labels(consumer.name, "ok").inc()
            finally:
                structlog.contextvars.unbind_contextvars("item_id", "correlation_id", "consumer")

        async def dead_letter(event: ItemEvent, exc: BaseException) -> None:
            metrics.STAGE_PROCESSED.labels(consumer.name, "dead_letter").inc()
            await self.fail_item(event, consumer.name, f"{type(exc).__name__}: {exc}")

        sub = await self.bus.subscribe(consumer.name, consumer.topics, handler, dead_letter)
        self._subscriptions.append(sub)
        return sub

    async def fail_item(self, event: ItemEvent, stage: str, reason: str) -> None:
        """Put the item of `event` in the failed state with `reason`, unless already terminal."""
        async with self.uow() as uow:
            item = await uow.item(event.item_id)
            if uow.is_terminal(item):
                return
            item.failure_reason = reason[:2000]
            failed = event.follow(ItemFailed, stage, stage=stage, reason=reason[:2000])
            uow.transition(item, ItemState.FAILED, reason=reason[:2000], event=failed)
            uow.emit(failed)
            await uow.commit()
        metrics.ITEMS_FAILED.labels(stage).inc()
        await self.relay.publish(uow.emitted)

    async def chain_audit(self) -> int:
        """Link every committed pending audit entry into the hash chain."""
        total = 0
        while True:
            async with self.uow() as uow:
                chained = await audit.chain_pending(uow.session)
                await uow.commit()
            total += chained
            if chained < 500:
                return total

    async def run_periodic(self, interval: float, job: Callable[[], Awaitable[object]],
                           name: str) -> None:
        """Run `job` every `interval` seconds until cancelled; a failing run is logged."""
        while True:
            await asyncio.sleep(interval)
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("periodic job failed", job=name)
