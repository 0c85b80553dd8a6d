from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from shared.contracts import ItemEvent

Handler = Callable[[ItemEvent], Awaitable[None]]
# Called once before a message is dead-lettered because its handler failed, so the item can be
# marked failed with the reason. Not called for broker-side dead letters (delivery limit).
DeadLetterHook = Callable[[ItemEvent, BaseException], Awaitable[None]]


class Subscription(Protocol):
    async def cancel(self) -> None:
        """Stop consuming; unacknowledged messages go back to the queue."""


class Bus(Protocol):
    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, event: ItemEvent) -> None:
        """Publish durably: returns once the broker has confirmed the message."""

    async def subscribe(
        self,
        consumer: str,
        topics: Sequence[str],
        handler: Handler,
        on_dead_letter: DeadLetterHook | None = None,
    ) -> Subscription:
        """Consume `topics` (AMQP patterns) through the durable queue named `consumer`."""

    async def dead_letter_count(self, consumer: str) -> int:
        """Messages waiting in the consumer's dead-letter queue."""

    async def healthy(self) -> bool:
        """Whether the bus can deliver now (for readiness probes)."""


def topic_matches(pattern: str, topic: str) -> bool:
    """AMQP topic matching: `*` is one word, `#` zero or more."""
    return _match(pattern.split("."), topic.split("."))


def _match(p: list[str], t: list[str]) -> bool:
    if not p:
        return not t
    if p[0] == "#":
        return any(_match(p[1:], t[i:]) for i in range(len(t) + 1))
    if not t:
        return False
    return (p[0] == "*" or p[0] == t[0]) and _match(p[1:], t[1:])
