"""One contract suite for both buses: the in-process MemoryBus and RabbitBus on the real broker.

Every test runs against each implementation through a `Harness`, which can open further bus
connections to the same broker and exchange (for the memory bus: views on the same bus object)
and push raw bytes onto a topic. Rabbit runs use a random exchange, so runs never collide, and
delete their queues afterwards.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import pytest

from shared.bus import Bus, DeadLetterHook, Handler, RetryPolicy, Subscription
from shared.bus._memory import MemoryBus
from shared.bus._rabbitmq import RabbitBus
from shared.contracts import BlobRef, Channel, ItemEvent, ItemReceived, ItemRouted, RouteOutcome
from shared.errors import PermanentError, TransientError
from tests.conftest import async_wait_for, unavailable
from tests.support import rabbit

POLICY = RetryPolicy(max_attempts=3, base_delay=0.05, max_delay=0.2)
REPO = Path(__file__).resolve().parents[2]


def received() -> ItemReceived:
    return ItemReceived(
        correlation_id=uuid.uuid4(), producer="test", item_id=uuid.uuid4(),
        channel=Channel.EMAIL, mailbox="post@eksempelby.dk", source_ref="imap:1",
        raw=BlobRef(sha256=uuid.uuid4().hex * 2, size=42, content_type="message/rfc822"))


def routed() -> ItemRouted:
    return received().follow(ItemRouted, "router", outcome=RouteOutcome.TRIAGE)


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async def check() -> bool:
        return predicate()

    await async_wait_for(check, timeout=timeout, interval=0.02)


class _MemoryView:
    """A 'connection' to a shared MemoryBus: closing it ends only its own subscriptions, as
    closing one AMQP connection does."""

    def __init__(self, bus: MemoryBus) -> None:
        self.bus = bus
        self.subs: list[Subscription] = []

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        for sub in self.subs:
            await sub.cancel()

    async def publish(self, event: ItemEvent) -> None:
        await self.bus.publish(event)

    async def subscribe(self, consumer: str, topics: Sequence[str], handler: Handler,
                        on_dead_letter: DeadLetterHook | None = None) -> Subscription:
        sub = await self.bus.subscribe(consumer, topics, handler, on_dead_letter)
        self.subs.append(sub)
        return sub

    async def dead_letter_count(self, consumer: str) -> int:
        return await self.bus.dead_letter_count(consumer)


@dataclass
class Harness:
    kind: str
    bus: Bus
    connect: Callable[[], Awaitable[Bus]]  # another connection to the same broker/exchange
    publish_raw: Callable[[str, bytes], Awaitable[None]]
    dead_reasons: Callable[[str], Awaitable[list[str]]]  # drains the consumer's DLQ
    exchange: str = ""


@pytest.fixture(params=["memory", "rabbitmq"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "memory":
        shared = MemoryBus(policy=POLICY, prefetch=4, delivery_limit=5)

        async def memory_connect() -> Bus:
            return _MemoryView(shared)

        async def memory_reasons(consumer: str) -> list[str]:
            return [reason for _, reason in shared.dead_letters(consumer)]

        h = Harness("memory", shared, memory_connect, shared.publish_raw, memory_reasons)
        yield h
        await shared.close()
        return

    url = str(request.getfixturevalue("rabbit_url"))
    exchange = f"pftest.{uuid.uuid4().hex[:10]}"
    buses: list[RabbitBus] = []

    async def rabbit_connect() -> Bus:
        bus = RabbitBus(url, exchange=exchange, policy=POLICY, prefetch=4, delivery_limit=5)
        await bus.connect()
        buses.append(bus)
        return bus

    async def raw(topic: str, body: bytes) -> None:
        async with await aio_pika.connect(url) as conn:
            channel = await conn.channel()
            ex = await channel.get_exchange(exchange)
            await ex.publish(aio_pika.Message(body), routing_key=topic)

    async def rabbit_reasons(consumer: str) -> list[str]:
        reasons = []
        async with await aio_pika.connect(url) as conn:
            channel = await conn.channel()
            dlq = await channel.get_queue(f"{exchange}.{consumer}.dlq")
            while (msg := await dlq.get(no_ack=True, fail=False)) is not None:
                reasons.append(str((msg.headers or {}).get("x-death-reason", "")))
        return reasons

    main = await rabbit_connect()
    yield Harness("rabbitmq", main, rabbit_connect, raw, rabbit_reasons, exchange)
    for bus in buses:
        await bus.close()
    await _delete_topology(url, exchange)


CONSUMERS = ("exact", "star", "hash", "multi", "later", "acks", "flaky", "broken", "refused",
             "garbage", "mortal", "poison", "killed")


async def _delete_topology(url: str, exchange: str) -> None:
    """Remove the test exchange's queues and exchanges from the shared broker (deleting a
    queue that does not exist is fine)."""
    delays = {max(1, round(POLICY.delay(n) * 1000)) for n in range(1, POLICY.max_attempts + 1)}
    async with await aio_pika.connect(url) as conn:
        channel = await conn.channel()
        for consumer in CONSUMERS:
            queue = f"{exchange}.{consumer}"
            for name in (queue, f"{queue}.dlq", *(f"{queue}.retry.{ms}" for ms in delays)):
                await channel.queue_delete(name)
        for name in (exchange, f"{exchange}.dlx"):
            await channel.exchange_delete(name)


class Recorder:
    """A handler that records what it saw and fails as told."""

    def __init__(self, fail: Callable[[int], BaseException | None] = lambda n: None) -> None:
        self.fail = fail
        self.seen: list[ItemEvent] = []
        self.times: list[float] = []
        self.dead: list[tuple[ItemEvent, BaseException]] = []

    async def __call__(self, event: ItemEvent) -> None:
        self.seen.append(event)
        self.times.append(asyncio.get_running_loop().time())
        exc = self.fail(len(self.seen))
        if exc is not None:
            raise exc

    async def on_dead_letter(self, event: ItemEvent, exc: BaseException) -> None:
        self.dead.append((event, exc))


class Blocker:
    """A handler that blocks until released; `started` is set when a message arrives."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.seen: list[ItemEvent] = []

    async def __call__(self, event: ItemEvent) -> None:
        self.seen.append(event)
        self.started.set()
        await self.release.wait()


async def test_topic_patterns_route_to_each_matching_consumer(harness: Harness) -> None:
    exact, star, hash_, multi = Recorder(), Recorder(), Recorder(), Recorder()
    await harness.bus.subscribe("exact", ["item.received"], exact)
    await harness.bus.subscribe("star", ["item.*"], star)
    await harness.bus.subscribe("hash", ["#.routed"], hash_)
    await harness.bus.subscribe("multi", ["item.received", "item.routed"], multi)
    first, second = received(), routed()
    await harness.bus.publish(first)
    await harness.bus.publish(second)

    await eventually(lambda: len(star.seen) == 2 and len(multi.seen) == 2)
    await eventually(lambda: len(exact.seen) == 1 and len(hash_.seen) == 1)
    assert exact.seen == [first]
    assert hash_.seen == [second]
    assert {e.message_id for e in star.seen} == {first.message_id, second.message_id}
    received_copy = next(e for e in star.seen if e.message_id == first.message_id)
    assert received_copy == first  # through the wire format and back, unchanged


async def test_published_message_survives_the_publisher_closing(harness: Harness) -> None:
    # The queue exists but nobody consumes while the message is published and the
    # publisher's connection is closed right after publish() returned.
    sub = await harness.bus.subscribe("later", ["item.received"], Recorder())
    await sub.cancel()
    publisher = await harness.connect()
    event = received()
    await publisher.publish(event)
    await publisher.close()

    late = Recorder()
    await harness.bus.subscribe("later", ["item.received"], late)
    await eventually(lambda: len(late.seen) == 1)
    assert late.seen[0].message_id == event.message_id


async def test_message_is_acked_only_after_the_handler_returned(harness: Harness) -> None:
    blocker = Blocker()
    sub = await harness.bus.subscribe("acks", ["item.received"], blocker)
    event = received()
    await harness.bus.publish(event)
    await asyncio.wait_for(blocker.started.wait(), 10)
    await sub.cancel()  # the handler never returns

    again = Recorder()
    await harness.bus.subscribe("acks", ["item.received"], again)
    await eventually(lambda: len(again.seen) == 1)
    assert again.seen[0].message_id == event.message_id
    await asyncio.sleep(0.2)  # and it is delivered once, not twice
    assert len(again.seen) == 1
    assert await harness.bus.dead_letter_count("acks") == 0


async def test_transient_error_is_retried_with_back_off(harness: Harness) -> None:
    flaky = Recorder(lambda n: TransientError("ESDH down") if n <= 2 else None)
    await harness.bus.subscribe("flaky", ["item.received"], flaky, flaky.on_dead_letter)
    event = received()
    await harness.bus.publish(event)

    await eventually(lambda: len(flaky.seen) == 3)
    assert {e.message_id for e in flaky.seen} == {event.message_id}
    gaps = [b - a for a, b in zip(flaky.times, flaky.times[1:], strict=False)]
    for attempt, gap in enumerate(gaps, start=1):
        assert gap >= POLICY.delay(attempt) * 0.9, (attempt, gap)
    await asyncio.sleep(0.3)
    assert len(flaky.seen) == 3  # success is final: no further delivery
    assert flaky.dead == []
    assert await harness.bus.dead_letter_count("flaky") == 0


async def test_always_failing_handler_is_dead_lettered_after_max_attempts(
        harness: Harness) -> None:
    broken = Recorder(lambda n: RuntimeError("bug"))
    await harness.bus.subscribe("broken", ["item.received"], broken, broken.on_dead_letter)
    event = received()
    await harness.bus.publish(event)

    async def dead() -> bool:
        return await harness.bus.dead_letter_count("broken") == 1

    await async_wait_for(dead, timeout=10, interval=0.05)
    assert len(broken.seen) == POLICY.max_attempts
    assert len(broken.dead) == 1
    assert broken.dead[0][0].message_id == event.message_id
    assert isinstance(broken.dead[0][1], RuntimeError)
    await asyncio.sleep(0.3)
    assert len(broken.seen) == POLICY.max_attempts
    assert await harness.bus.dead_letter_count("broken") == 1
    assert await harness.dead_reasons("broken") == ["RuntimeError: bug"]


async def test_permanent_error_is_dead_lettered_at_once(harness: Harness) -> None:
    refused = Recorder(lambda n: PermanentError("unknown mailbox"))
    await harness.bus.subscribe("refused", ["item.received"], refused, refused.on_dead_letter)
    await harness.bus.publish(received())

    async def dead() -> bool:
        return await harness.bus.dead_letter_count("refused") == 1

    await async_wait_for(dead, timeout=10, interval=0.05)
    await asyncio.sleep(0.2)
    assert len(refused.seen) == 1
    assert len(refused.dead) == 1
    assert isinstance(refused.dead[0][1], PermanentError)
    assert await harness.dead_reasons("refused") == ["PermanentError: unknown mailbox"]


async def test_undecodable_message_is_dead_lettered(harness: Harness) -> None:
    handler = Recorder()
    await harness.bus.subscribe("garbage", ["item.received"], handler, handler.on_dead_letter)
    await harness.publish_raw("item.received", b"\x00not json at all")
    await harness.publish_raw("item.received", b'{"type": "ItemReceived"}')
    good = received()
    await harness.bus.publish(good)

    async def dead() -> bool:
        return await harness.bus.dead_letter_count("garbage") == 2

    await async_wait_for(dead, timeout=10, interval=0.05)
    await eventually(lambda: len(handler.seen) == 1)
    assert handler.seen[0].message_id == good.message_id
    assert handler.dead == []  # no event to fail: only the dead-letter queue knows
    reasons = await harness.dead_reasons("garbage")
    assert len(reasons) == 2
    assert all(r.startswith("undecodable") for r in reasons)


async def test_rabbit_messages_are_persistent_and_labelled(harness: Harness) -> None:
    if harness.kind == "memory":
        pytest.skip("AMQP message properties exist only on the broker")
    assert isinstance(harness.bus, RabbitBus)
    async with await aio_pika.connect(harness.bus.url) as conn:
        channel = await conn.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(harness.exchange, routing_key="item.received")
        event = received()
        await harness.bus.publish(event)
        msg = await queue.get(timeout=5)
        await msg.ack()
    assert msg.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert msg.message_id == str(event.message_id)
    assert msg.correlation_id == str(event.correlation_id)
    assert msg.content_type == "application/json"
    assert msg.type == "ItemReceived"
    assert msg.routing_key == "item.received"


async def test_message_is_redelivered_when_its_consumer_dies(harness: Harness) -> None:
    # The dying consumer has a connection of its own, closed while its handler runs.
    other = await harness.connect()
    blocker = Blocker()
    await other.subscribe("mortal", ["item.received"], blocker)
    event = received()
    await harness.bus.publish(event)
    await asyncio.wait_for(blocker.started.wait(), 10)
    await other.close()

    survivor = Recorder()
    await harness.bus.subscribe("mortal", ["item.received"], survivor)
    await eventually(lambda: len(survivor.seen) == 1)
    assert survivor.seen[0].message_id == event.message_id


async def test_poison_message_that_kills_its_consumer_is_dead_lettered(harness: Harness) -> None:
    # Every delivery dies with its consumer's connection; beyond the delivery limit (5) the
    # message goes to the DLQ, without the dead-letter hook (no handler failure to report).
    sub = await harness.bus.subscribe("poison", ["item.received"], Recorder())
    await sub.cancel()
    await harness.bus.publish(received())
    deliveries = 0
    hooked: list[ItemEvent] = []

    async def hook(event: ItemEvent, exc: BaseException) -> None:
        hooked.append(event)

    while await harness.bus.dead_letter_count("poison") == 0 and deliveries <= 10:
        other = await harness.connect()
        blocker = Blocker()
        await other.subscribe("poison", ["item.received"], blocker, hook)
        try:
            await asyncio.wait_for(blocker.started.wait(), 1)
            deliveries += 1
        except TimeoutError:
            pass
        await other.close()
    assert await harness.bus.dead_letter_count("poison") == 1
    # RabbitMQ 3.10 quorum queues allow `x-delivery-limit` redeliveries after the first.
    assert deliveries == 5 + 1
    assert hooked == []


CHILD = textwrap.dedent("""
    import asyncio, sys
    from shared.bus import RetryPolicy
    from shared.bus._rabbitmq import RabbitBus

    async def main():
        bus = RabbitBus(sys.argv[1], exchange=sys.argv[2], policy=RetryPolicy(),
                        prefetch=1, delivery_limit=5)
        async def handler(event):
            print("started", event.message_id, flush=True)
            await asyncio.sleep(3600)
        await bus.subscribe("killed", ["item.received"], handler)
        print("ready", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
""")


async def test_message_is_redelivered_when_a_consumer_process_is_killed(
        harness: Harness) -> None:
    if harness.kind == "memory":
        pytest.skip("the in-process bus dies with its process; the outbox covers that")
    assert isinstance(harness.bus, RabbitBus)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, harness.bus.url, harness.exchange,
        stdout=subprocess.PIPE, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 30)
        assert line.strip() == b"ready"
        event = received()
        await harness.bus.publish(event)
        line = await asyncio.wait_for(child.stdout.readline(), 10)
        assert line.split() == [b"started", str(event.message_id).encode()]
        child.send_signal(signal.SIGKILL)
        await child.wait()

        survivor = Recorder()
        await harness.bus.subscribe("killed", ["item.received"], survivor)
        await eventually(lambda: len(survivor.seen) == 1)
        assert survivor.seen[0].message_id == event.message_id
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()


@pytest.fixture
def throwaway_node() -> Iterator[rabbit.RabbitNode]:
    if not rabbit.available():
        unavailable("rabbitmq-server for a throwaway RabbitMQ node")
    with rabbit.rabbit_node() as node:
        yield node


async def test_consumer_and_publisher_reconnect_after_broker_restart(
        request: pytest.FixtureRequest, harness: Harness) -> None:
    if harness.kind == "memory":
        pytest.skip("the in-process bus has no broker to restart")
    node: rabbit.RabbitNode = request.getfixturevalue("throwaway_node")
    bus = RabbitBus(node.url, exchange="pf.restart", policy=POLICY, prefetch=4,
                    reconnect_interval=0.5, publish_timeout=30)
    await bus.connect()
    try:
        seen = Recorder()
        await bus.subscribe("restart", ["item.*"], seen)
        await bus.publish(received())
        await eventually(lambda: len(seen.seen) == 1)

        # A confirmed message waiting in a durable queue survives the restart.
        parked_sub = await bus.subscribe("parked", ["item.received"], Recorder())
        await parked_sub.cancel()
        parked = received()
        await bus.publish(parked)
        await eventually(lambda: len(seen.seen) == 2)

        await asyncio.to_thread(node.stop)
        await asyncio.to_thread(node.start)

        after = received()
        await bus.publish(after)  # waits for the connection to be restored
        await eventually(lambda: len(seen.seen) == 3, timeout=30)
        assert seen.seen[-1].message_id == after.message_id
        late = Recorder()
        await bus.subscribe("parked", ["item.received"], late)
        # Both the parked message and `after` (published into the parked queue as well).
        await eventually(lambda: len(late.seen) == 2)
        assert {e.message_id for e in late.seen} == {parked.message_id, after.message_id}
    finally:
        await bus.close()
