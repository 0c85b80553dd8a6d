"""The plumbing every consumer relies on, on SQLite and PostgreSQL with the in-process bus:
inbox de-duplication, publish after commit, failing an item on a dead letter, the outbox sweep
and the reconciler."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from shared.bus import RetryPolicy
from shared.bus._memory import MemoryBus
from shared.contracts import BlobRef, ItemEvent, ItemExtracted, ItemReceived, ItemState
from shared.db import UnitOfWork
from shared.db.models import InboxEntry, Item, ItemTransition, OutboxMessage, utcnow
from shared.errors import PermanentError
from shared.reconciler import Reconciler
from shared.runtime import Consumer, Runtime
from shared.settings import Settings
from tests.conftest import async_wait_for, own_database

BLOB = BlobRef(sha256="a" * 64, size=1)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A database of each test's own: the reconciler and the outbox sweep act on every item
    and event they find, so they must not meet other tests' leftovers."""
    with own_database(request, "pf_runtime") as url:
        yield url


@pytest.fixture
async def runtime(tmp_path: Path, db_url: str) -> AsyncIterator[Runtime]:
    settings = Settings(data_dir=tmp_path, database_url=db_url)  # type: ignore[arg-type]
    rt = Runtime(settings, bus=MemoryBus(policy=RetryPolicy(3, 0.01, 0.05), prefetch=4))
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


async def new_item(runtime: Runtime, state: ItemState = ItemState.RECEIVED) -> ItemReceived:
    event = ItemReceived(correlation_id=uuid.uuid4(), producer="test", item_id=uuid.uuid4(),
                         channel="email", mailbox=f"mb-{uuid.uuid4().hex[:6]}", source_ref="1:1",
                         raw=BLOB)
    async with runtime.uow() as uow:
        item = Item(id=event.item_id, correlation_id=event.correlation_id, channel="email",
                    mailbox=event.mailbox, source_ref="1:1", state=state.value)
        uow.session.add(item)
        uow.emit(event)
        await uow.commit()
    return event


async def state_of(runtime: Runtime, item_id: uuid.UUID) -> Item:
    async with runtime.uow() as uow:
        return await uow.item(item_id, lock=False)


async def test_consumer_processes_once_and_publishes_after_commit(runtime: Runtime) -> None:
    seen: list[uuid.UUID] = []
    downstream: list[ItemEvent] = []

    async def handle(event: ItemEvent, uow: UnitOfWork) -> None:
        item = await uow.item(event.item_id)
        seen.append(event.message_id)
        nxt = event.follow(ItemExtracted, "test", channel="email", mailbox="m", text=BLOB)
        uow.transition(item, ItemState.EXTRACTED, event=nxt)
        uow.emit(nxt)

    async def collect(event: ItemEvent) -> None:
        downstream.append(event)

    await runtime.start_consumer(Consumer("t-extractor", ("item.received",), handle))
    await runtime.bus.subscribe("t-next", ("item.extracted",), collect)
    event = await new_item(runtime)
    await runtime.bus.publish(event)
    await runtime.bus.publish(event)  # a redelivery: must not be processed twice
    await async_wait_for(lambda: _true(len(downstream) >= 1), timeout=10)
    await asyncio.sleep(0.2)
    assert seen == [event.message_id]
    await runtime.relay.flush()
    assert len(downstream) == 1 and downstream[0].causation_id == event.message_id
    async with runtime.uow() as uow:
        inbox = (await uow.session.execute(select(InboxEntry).where(
            InboxEntry.message_id == event.message_id))).scalars().all()
        out = (await uow.session.execute(select(OutboxMessage).where(
            OutboxMessage.message_id == downstream[0].message_id))).scalar_one()
        history = (await uow.session.execute(select(ItemTransition.to_state).where(
            ItemTransition.item_id == event.item_id))).scalars().all()
    assert [e.consumer for e in inbox] == ["t-extractor"]
    assert out.published_at is not None
    assert history == ["extracted"]


async def _true(value: bool) -> bool:
    return value


async def received_by(runtime: Runtime, consumer: str) -> list[ItemEvent]:
    """What `consumer`, subscribed to item.received, is handed; the list fills as it runs."""
    got: list[ItemEvent] = []

    async def collect(event: ItemEvent) -> None:
        got.append(event)

    await runtime.bus.subscribe(consumer, ("item.received",), collect)
    return got


async def test_dead_lettered_message_fails_the_item_with_the_reason(runtime: Runtime) -> None:
    async def handle(event: ItemEvent, uow: UnitOfWork) -> None:
        raise PermanentError("cannot read this")

    await runtime.start_consumer(Consumer("t-bad", ("item.received",), handle))
    event = await new_item(runtime)
    await runtime.bus.publish(event)

    async def failed() -> bool:
        return (await state_of(runtime, event.item_id)).state == "failed"

    await async_wait_for(failed, timeout=10)
    item = await state_of(runtime, event.item_id)
    assert item.failure_reason == "PermanentError: cannot read this"
    assert await runtime.bus.dead_letter_count("t-bad") == 1


async def test_outbox_sweep_publishes_what_a_crash_left_behind(runtime: Runtime) -> None:
    got = await received_by(runtime, "t-sweep")
    event = await new_item(runtime)  # committed, never published: the "crash"
    assert await runtime.relay.sweep(older_than=0) >= 1
    await async_wait_for(lambda: _true(any(e.message_id == event.message_id for e in got)),
                         timeout=10)
    assert await runtime.relay.sweep(older_than=0) == 0


async def test_reconciler_republishes_stuck_items_then_fails_them(runtime: Runtime) -> None:
    got = await received_by(runtime, "t-rec")
    event = await new_item(runtime)
    reconciler = Reconciler(runtime.uow, runtime.relay, stuck_after=60, max_attempts=2)
    for attempt in range(3):
        async with runtime.uow() as uow:  # age the item past `stuck_after`
            await uow.session.execute(update(Item).where(Item.id == event.item_id).values(
                updated_at=utcnow() - timedelta(minutes=5)))
            await uow.commit()
        await reconciler.run_once()
        item = await state_of(runtime, event.item_id)
        if attempt < 2:
            assert item.state == "received" and item.reconcile_attempts == attempt + 1
    await async_wait_for(lambda: _true(len(got) == 2), timeout=10)
    assert all(e.message_id == event.message_id for e in got)
    item = await state_of(runtime, event.item_id)
    assert item.state == "failed"
    assert "stuck in state 'received' after 2 re-publishes" in (item.failure_reason or "")
