"""The message bus: one small protocol, two implementations that pass one contract suite.

- `MemoryBus`: in-process asyncio queues for the all-in-one mode.
- `RabbitBus`: RabbitMQ through aio-pika (topic exchange, durable quorum queues, confirms).

Both deliver at least once and ack only after the handler returned, i.e. after the handler's
own transaction committed. A handler that raises a `PermanentError` (or a message that cannot be
decoded) is dead-lettered at once; any other exception is retried with exponential back-off up
to `RetryPolicy.max_attempts`, then dead-lettered. Consumers must therefore be idempotent.
"""

from __future__ import annotations

from ._policy import RetryPolicy, is_permanent
from ._protocol import Bus, DeadLetterHook, Handler, Subscription, topic_matches

# Every consumer queue the services declare, for the dead-letter list, its alerts and
# `postfordeler deadletter` (services do not import each other, so the names live here).
CONSUMERS = ("extractor", "scan-placement", "classifier", "router", "journal", "journal-esdh",
             "journal-receipts", "delivery")

__all__ = [
    "CONSUMERS",
    "Bus",
    "DeadLetterHook",
    "Handler",
    "RetryPolicy",
    "Subscription",
    "is_permanent",
    "make_bus",
    "topic_matches",
]


def make_bus(amqp_url: str, *, exchange: str = "postfordeler", policy: RetryPolicy | None = None,
             prefetch: int = 32, delivery_limit: int = 10) -> Bus:
    """The bus for a URL: `memory://` gives the in-process bus, `amqp://...` RabbitMQ."""
    policy = policy or RetryPolicy()
    if amqp_url.startswith("memory://"):
        from ._memory import MemoryBus

        return MemoryBus(policy=policy, prefetch=prefetch, delivery_limit=delivery_limit)
    from ._rabbitmq import RabbitBus

    return RabbitBus(amqp_url, exchange=exchange, policy=policy, prefetch=prefetch,
                     delivery_limit=delivery_limit)
