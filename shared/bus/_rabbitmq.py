"""RabbitMQ bus through aio-pika.

Topology for exchange `E` and consumer `C` (all durable):

    E                  topic exchange every event is published to (routing key = event topic)
    E.C                quorum queue bound to C's topics; dead-letters to E.dlx, x-delivery-limit
    E.C.dlq            quorum queue bound to E.dlx with routing key E.C
    E.C.retry.<ms>     classic queue with x-message-ttl <ms>, dead-letters back to E.C through
                       the default exchange: one queue per back-off step, because a classic
                       queue only expires messages at its head and one queue with mixed
                       per-message TTLs would hold a short delay behind a long one
    E.dlx              direct exchange for dead letters

A message is acked only after the handler returned. A failed message that is to be retried is
republished to the retry queue with the next attempt number in the `x-attempt` header, and the
original is acked once the broker confirmed the copy. A message that is given up on is
republished to the dead-letter queue with the reason in `x-death-reason` (reject() could not
carry it); should that fail it is rejected, which dead-letters it through the broker. A message
whose consumer died before acking is redelivered by the broker; after `delivery_limit`
redeliveries the quorum queue dead-letters it itself (a poison message that kills its consumer).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustExchange,
    AbstractRobustQueue,
)
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from shared.contracts import ItemEvent, encode_event, parse_event
from shared.errors import TransientError

from ._policy import RetryPolicy
from ._protocol import DeadLetterHook, Handler

log = structlog.get_logger(__name__)

ATTEMPT_HEADER = "x-attempt"
REASON_HEADER = "x-death-reason"
_REASON_MAX = 500


class _RabbitSubscription:
    def __init__(self, bus: RabbitBus, channel: AbstractRobustChannel, queue: AbstractRobustQueue,
                 consumer: str, handler: Handler, hook: DeadLetterHook | None) -> None:
        self._bus = bus
        self._channel = channel
        self._queue = queue
        self._consumer = consumer
        self._handler = handler
        self._hook = hook
        self._tag: str | None = None
        self._inflight: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self._tag = await self._queue.consume(self._on_message)

    async def cancel(self) -> None:
        """Stop consuming and abandon in-flight handlers; closing the channel hands their
        unacknowledged messages back to the broker for redelivery."""
        self._bus._subscriptions.discard(self)
        if self._tag is not None and not self._channel.is_closed:
            # A channel already gone has nothing consuming any more.
            with contextlib.suppress(*CONNECTION_EXCEPTIONS):
                await self._queue.cancel(self._tag)
        self._tag = None
        for task in self._inflight:
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)
        if not self._channel.is_closed:
            await self._channel.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        try:
            await self._process(message)
        except Exception as exc:
            # The broker could not take the ack, retry copy or dead letter (connection lost,
            # publish not confirmed): hand the message back so it is delivered again.
            log.warning("message settlement failed, requeueing", consumer=self._consumer,
                        message_id=message.message_id, error=type(exc).__name__)
            with contextlib.suppress(*CONNECTION_EXCEPTIONS):
                await message.nack(requeue=True)
        finally:
            self._inflight.discard(task)

    async def _process(self, message: AbstractIncomingMessage) -> None:
        attempt = _attempt(message)
        try:
            event = parse_event(message.body)
        except Exception as exc:  # undecodable: retrying cannot help
            log.error("dead-lettering undecodable message", consumer=self._consumer,
                      message_id=message.message_id, error=type(exc).__name__)
            await self._dead_letter(message, attempt, f"undecodable: {type(exc).__name__}")
            return
        try:
            await self._handler(event)
        except asyncio.CancelledError:
            raise  # not acked: the broker redelivers once this channel closes
        except Exception as exc:
            await self._failed(message, event, attempt, exc)
            return
        await message.ack()

    async def _failed(self, message: AbstractIncomingMessage, event: ItemEvent, attempt: int,
                      exc: Exception) -> None:
        policy = self._bus.policy
        if policy.should_retry(exc, attempt):
            delay = policy.delay(attempt)
            log.warning("handler failed, retrying", consumer=self._consumer,
                        item_id=str(event.item_id), attempt=attempt, delay=delay,
                        error=type(exc).__name__)
            await self._bus._publish_retry(self._consumer, message, attempt + 1, delay)
            await message.ack()
            return
        log.error("dead-lettering message", consumer=self._consumer, item_id=str(event.item_id),
                  attempt=attempt, error=type(exc).__name__)
        if self._hook is not None:
            try:
                await self._hook(event, exc)
            except Exception:  # the dead letter itself must not be lost
                log.exception("dead-letter hook failed", consumer=self._consumer)
        await self._dead_letter(message, attempt, f"{type(exc).__name__}: {exc}")

    async def _dead_letter(self, message: AbstractIncomingMessage, attempt: int,
                           reason: str) -> None:
        try:
            await self._bus._publish_dead_letter(self._consumer, message, attempt, reason)
        except Exception:
            # Without the reason, but still in the DLQ: the queue dead-letters rejects.
            log.warning("dead-letter publish failed, rejecting", consumer=self._consumer,
                        message_id=message.message_id)
            await message.reject(requeue=False)
            return
        await message.ack()


def _attempt(message: AbstractIncomingMessage) -> int:
    value = (message.headers or {}).get(ATTEMPT_HEADER, 1)
    return value if isinstance(value, int) and value >= 1 else 1


class RabbitBus:
    def __init__(self, amqp_url: str, *, exchange: str = "postfordeler",
                 policy: RetryPolicy | None = None, prefetch: int = 32,
                 delivery_limit: int = 10, reconnect_interval: float = 1.0,
                 publish_timeout: float = 15.0) -> None:
        self.url = amqp_url
        self.exchange_name = exchange
        self.dlx_name = f"{exchange}.dlx"
        self.policy = policy or RetryPolicy()
        self.prefetch = prefetch
        self.delivery_limit = delivery_limit
        self.reconnect_interval = reconnect_interval
        self.publish_timeout = publish_timeout
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None  # publishing, with confirms
        self._exchange: AbstractRobustExchange | None = None
        self._dlx: AbstractRobustExchange | None = None
        self._retry_queues: set[str] = set()
        self._subscriptions: set[_RabbitSubscription] = set()
        self._lock = asyncio.Lock()

    async def connect(self) -> None:
        async with self._lock:
            if self._connection is not None:
                return
            connection = await aio_pika.connect_robust(
                self.url, reconnect_interval=self.reconnect_interval,
                client_properties={"connection_name": f"postfordeler:{self.exchange_name}"})
            channel = await connection.channel(publisher_confirms=True)
            self._exchange = await channel.declare_exchange(
                self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
            self._dlx = await channel.declare_exchange(
                self.dlx_name, aio_pika.ExchangeType.DIRECT, durable=True)
            self._connection, self._channel = connection, channel

    async def close(self) -> None:
        for sub in list(self._subscriptions):
            await sub.cancel()
        if self._connection is not None:
            await self._connection.close()
        self._connection = self._channel = self._exchange = self._dlx = None
        self._retry_queues.clear()

    async def publish(self, event: ItemEvent) -> None:
        exchange = await self._ready_exchange()
        message = aio_pika.Message(
            encode_event(event),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(event.message_id),
            correlation_id=str(event.correlation_id),
            content_type="application/json",
            type=type(event).__name__,
        )
        await self._confirmed(exchange, message, event.topic)

    async def subscribe(self, consumer: str, topics: Sequence[str], handler: Handler,
                        on_dead_letter: DeadLetterHook | None = None) -> _RabbitSubscription:
        exchange = await self._ready_exchange()
        assert self._connection is not None and self._dlx is not None
        qname = self.queue_name(consumer)
        channel = await self._connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=self.prefetch)
        queue = await channel.declare_queue(qname, durable=True, arguments={
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": self.dlx_name,
            "x-dead-letter-routing-key": qname,
            # Broker-side dead letters (delivery limit, reject) must not be lost either;
            # at-least-once dead-lettering requires the reject-publish overflow mode.
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
            "x-delivery-limit": self.delivery_limit,
        })
        for topic in topics:
            await queue.bind(exchange, routing_key=topic)
        dlq = await channel.declare_queue(f"{qname}.dlq", durable=True,
                                          arguments={"x-queue-type": "quorum"})
        await dlq.bind(self._dlx, routing_key=qname)
        sub = _RabbitSubscription(self, channel, queue, consumer, handler, on_dead_letter)
        await sub.start()
        self._subscriptions.add(sub)
        return sub

    async def dead_letter_count(self, consumer: str) -> int:
        await self._ready_exchange()
        assert self._connection is not None
        # A throwaway channel: a passive declare of a missing queue closes its channel.
        async with self._connection.channel(publisher_confirms=False) as channel:
            try:
                queue = await channel.declare_queue(
                    f"{self.queue_name(consumer)}.dlq", passive=True, robust=False)
            except aio_pika.exceptions.ChannelNotFoundEntity:
                return 0
            result = queue.declaration_result
            return int(result.message_count or 0)

    async def healthy(self) -> bool:
        return self._connection is not None and not self._connection.is_closed

    def queue_name(self, consumer: str) -> str:
        return f"{self.exchange_name}.{consumer}"

    async def delete_topology(self, consumers: Sequence[str]) -> None:
        """Remove the exchanges and the consumers' queues (main, dead-letter and retry), for
        tests and benchmarks that make a topology of their own, and for decommissioning."""
        await self._ready_exchange()
        assert self._connection is not None
        delays = {max(1, round(self.policy.delay(a) * 1000))
                  for a in range(1, self.policy.max_attempts)}
        async with self._connection.channel(publisher_confirms=False) as channel:
            for consumer in consumers:
                qname = self.queue_name(consumer)
                for name in (qname, f"{qname}.dlq", *(f"{qname}.retry.{ms}" for ms in delays)):
                    await channel.queue_delete(name)
            await channel.exchange_delete(self.exchange_name)
            await channel.exchange_delete(self.dlx_name)

    async def _ready_exchange(self) -> AbstractRobustExchange:
        if self._connection is None:
            await self.connect()
        assert self._exchange is not None
        return self._exchange

    async def _confirmed(self, exchange: AbstractExchange, message: aio_pika.Message,
                         routing_key: str) -> None:
        """Publish and wait for the broker's confirm. While the connection is being restored
        the publish is retried until `publish_timeout` (a retried publish whose first confirm
        was lost can duplicate the message; consumers de-duplicate)."""
        assert self._channel is not None
        channel = self._channel
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.publish_timeout
        while True:
            try:
                async with asyncio.timeout(max(0.1, deadline - loop.time())):
                    await channel.ready()
                    await exchange.publish(message, routing_key=routing_key, mandatory=False)
                return
            except TimeoutError as exc:
                raise TransientError(f"publish to {exchange.name} not confirmed in time") from exc
            except CONNECTION_EXCEPTIONS as exc:
                if loop.time() >= deadline:
                    raise TransientError(f"publish to {exchange.name} failed: {exc}") from exc
                await asyncio.sleep(min(0.2, self.reconnect_interval))

    async def _publish_retry(self, consumer: str, message: AbstractIncomingMessage,
                             attempt: int, delay: float) -> None:
        assert self._channel is not None
        qname = self.queue_name(consumer)
        ms = max(1, round(delay * 1000))
        retry_name = f"{qname}.retry.{ms}"
        if retry_name not in self._retry_queues:
            await self._channel.declare_queue(retry_name, durable=True, arguments={
                "x-queue-type": "classic",
                "x-message-ttl": ms,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": qname,
            })
            self._retry_queues.add(retry_name)
        await self._confirmed(self._channel.default_exchange, _copy(message, attempt),
                              retry_name)

    async def _publish_dead_letter(self, consumer: str, message: AbstractIncomingMessage,
                                   attempt: int, reason: str) -> None:
        assert self._dlx is not None
        copy = _copy(message, attempt, {REASON_HEADER: reason[:_REASON_MAX]})
        await self._confirmed(self._dlx, copy, self.queue_name(consumer))


def _copy(message: AbstractIncomingMessage, attempt: int,
          extra: dict[str, Any] | None = None) -> aio_pika.Message:
    headers: dict[str, Any] = {k: v for k, v in (message.headers or {}).items()
                               if k != "x-death"}  # the broker's bookkeeping, not ours
    headers[ATTEMPT_HEADER] = attempt
    headers.update(extra or {})
    return aio_pika.Message(
        message.body,
        headers=headers,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        content_type=message.content_type,
        type=message.type,
    )
