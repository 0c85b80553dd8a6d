"""In-process bus for the all-in-one mode, with the RabbitMQ bus's delivery semantics.

Queues live as long as the bus object: a subscription that is cancelled mid-message puts the
message back (like a broker redelivering an unacked message), and messages published while no
subscription is active wait in the consumer's queue. A crash of the whole process loses what is
queued here; the database outbox and the reconciler recover it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from shared.contracts import ItemEvent, encode_event, parse_event

from ._policy import RetryPolicy
from ._protocol import DeadLetterHook, Handler, topic_matches

log = structlog.get_logger(__name__)


@dataclass
class _Message:
    body: bytes
    attempt: int = 1
    deliveries: int = 0


@dataclass
class _Queue:
    name: str
    topics: tuple[str, ...]
    queue: asyncio.Queue[_Message] = field(default_factory=asyncio.Queue)
    dead: list[tuple[bytes, str]] = field(default_factory=list)


class _MemorySubscription:
    def __init__(self, bus: MemoryBus, tasks: list[asyncio.Task[None]]) -> None:
        self._bus = bus
        self._tasks = tasks

    async def cancel(self) -> None:
        self._bus._subscriptions.discard(self)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class MemoryBus:
    def __init__(self, *, policy: RetryPolicy | None = None, prefetch: int = 32,
                 delivery_limit: int = 10) -> None:
        self.policy = policy or RetryPolicy()
        self.prefetch = prefetch
        self.delivery_limit = delivery_limit
        self._queues: dict[str, _Queue] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._subscriptions: set[_MemorySubscription] = set()

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        for sub in list(self._subscriptions):
            await sub.cancel()  # in-flight messages go back to their queues
        for task in self._pending:
            task.cancel()
        self._pending.clear()

    async def publish(self, event: ItemEvent) -> None:
        # Through the wire format, as on a real broker.
        await self.publish_raw(event.topic, encode_event(event))

    async def publish_raw(self, topic: str, body: bytes) -> None:
        """Route `body` as if it had arrived from a broker (tests use it for garbage)."""
        for q in self._queues.values():
            if any(topic_matches(p, topic) for p in q.topics):
                q.queue.put_nowait(_Message(body))

    async def subscribe(self, consumer: str, topics: Sequence[str], handler: Handler,
                        on_dead_letter: DeadLetterHook | None = None) -> _MemorySubscription:
        q = self._queues.get(consumer)
        if q is None:
            q = self._queues[consumer] = _Queue(consumer, tuple(topics))
        else:
            q.topics = tuple(sorted(set(q.topics) | set(topics)))
        tasks = [asyncio.create_task(self._work(q, handler, on_dead_letter))
                 for _ in range(max(1, self.prefetch))]
        sub = _MemorySubscription(self, tasks)
        self._subscriptions.add(sub)
        return sub

    async def healthy(self) -> bool:
        return True

    async def dead_letter_count(self, consumer: str) -> int:
        q = self._queues.get(consumer)
        return len(q.dead) if q else 0

    def dead_letters(self, consumer: str) -> list[tuple[bytes, str]]:
        q = self._queues.get(consumer)
        return list(q.dead) if q else []

    async def _work(self, q: _Queue, handler: Handler, hook: DeadLetterHook | None) -> None:
        while True:
            msg = await q.queue.get()
            msg.deliveries += 1
            # As a quorum queue: `delivery_limit` redeliveries after the first delivery.
            if msg.deliveries > self.delivery_limit + 1:
                q.dead.append((msg.body, "delivery limit exceeded"))
                continue
            try:
                event = parse_event(msg.body)
            except Exception as exc:  # undecodable: nothing to retry
                q.dead.append((msg.body, f"undecodable: {exc}"))
                continue
            try:
                await handler(event)
            except asyncio.CancelledError:
                q.queue.put_nowait(msg)  # not acked: redeliver
                raise
            except Exception as exc:
                await self._failed(q, msg, event, exc, hook)

    async def _failed(self, q: _Queue, msg: _Message, event: ItemEvent, exc: Exception,
                      hook: DeadLetterHook | None) -> None:
        if self.policy.should_retry(exc, msg.attempt):
            delay = self.policy.delay(msg.attempt)
            log.warning("handler failed, retrying", consumer=q.name, item_id=str(event.item_id),
                        attempt=msg.attempt, delay=delay, error=type(exc).__name__)
            retry = _Message(msg.body, attempt=msg.attempt + 1)
            task = asyncio.create_task(self._requeue_later(delay, q, retry))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            return
        log.error("dead-lettering message", consumer=q.name, item_id=str(event.item_id),
                  attempt=msg.attempt, error=type(exc).__name__)
        if hook is not None:
            try:
                await hook(event, exc)
            except Exception:  # the dead letter itself must not be lost
                log.exception("dead-letter hook failed", consumer=q.name)
        q.dead.append((msg.body, f"{type(exc).__name__}: {exc}"))

    @staticmethod
    async def _requeue_later(delay: float, q: _Queue, msg: _Message) -> None:
        await asyncio.sleep(delay)
        q.queue.put_nowait(msg)
