"""Dead letters: list, show and replay what a consumer gave up on (API and CLI).

RabbitMQ keeps them in `<exchange>.<consumer>.dlq`. Reading is done with basic.get without
ack and the messages are handed back afterwards, so listing changes nothing. A replay
publishes the message (confirmed) straight to the consumer's own queue through the default
exchange, so only that consumer sees it again, and then acks the dead letter. The in-process
bus keeps dead letters in memory (`MemoryBus.dead_letters`). Event bodies shown to people have
CPR entity values masked.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from fastapi import APIRouter, Depends, HTTPException, Query, Request

from shared import audit
from shared.bus import CONSUMERS, Bus
from shared.contracts import TOPICS
from shared.settings import Settings

from .deps import Administrator, Session, current_principal
from .schemas import DeadLetterDetail, DeadLetterList, DeadLetterOut, Problem, ReplayResult

_TOPIC_BY_TYPE = TOPICS


@dataclass(frozen=True)
class DeadLetter:
    consumer: str
    message_id: str
    body: bytes
    reason: str
    attempts: int | None = None

    def decoded(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.body)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def summary(self) -> DeadLetterOut:
        data = self.decoded() or {}
        kind = data.get("type") if isinstance(data.get("type"), str) else None
        item = data.get("item_id")
        return DeadLetterOut(consumer=self.consumer, message_id=self.message_id,
                             topic=_TOPIC_BY_TYPE.get(kind or ""), event_type=kind,
                             item_id=item if isinstance(item, str) and _uuid(item) else None,
                             reason=self.reason, attempts=self.attempts)

    def detail(self) -> DeadLetterDetail:
        data = self.decoded()
        body: dict[str, Any] | str = (_mask(data) if data is not None
                                      else self.body.decode("utf-8", errors="replace")[:20000])
        return DeadLetterDetail(**self.summary().model_dump(), body=body)


def _uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _mask(data: dict[str, Any]) -> dict[str, Any]:
    entities = data.get("entities")
    if isinstance(entities, list):
        data = {**data, "entities": [
            {**e, "value": "[CPR]"} if isinstance(e, dict) and e.get("kind") == "cpr" else e
            for e in entities]}
    return data


class DeadLetterStore(Protocol):
    async def list(self, consumer: str, limit: int = 1000) -> list[DeadLetter]: ...

    async def replay(self, consumer: str, message_ids: set[str] | None) -> int:
        """Put the named dead letters (all when None) back on the consumer's queue."""

    async def close(self) -> None: ...


class MemoryDeadLetters:
    """The in-process bus's dead letters. Uses the bus's queue objects directly: the bus has
    no public way to take a dead letter back, and it lives in this very process."""

    def __init__(self, bus: Any) -> None:
        self.bus = bus

    async def list(self, consumer: str, limit: int = 1000) -> list[DeadLetter]:
        return [_memory_letter(consumer, body, reason)
                for body, reason in self.bus.dead_letters(consumer)[:limit]]

    async def replay(self, consumer: str, message_ids: set[str] | None) -> int:
        from shared.bus._memory import _Message

        q = self.bus._queues.get(consumer)
        if q is None:
            return 0
        keep, replayed = [], 0
        for body, reason in q.dead:
            if message_ids is None or _memory_letter(consumer, body, reason).message_id \
                    in message_ids:
                q.queue.put_nowait(_Message(body))
                replayed += 1
            else:
                keep.append((body, reason))
        q.dead[:] = keep
        return replayed

    async def close(self) -> None:
        return None


def _memory_letter(consumer: str, body: bytes, reason: str) -> DeadLetter:
    try:
        message_id = str(json.loads(body).get("message_id"))
    except (ValueError, AttributeError):
        import hashlib

        message_id = "sha256:" + hashlib.sha256(body).hexdigest()[:32]
    return DeadLetter(consumer, message_id, body, reason)


class RabbitDeadLetters:
    def __init__(self, url: str, exchange: str) -> None:
        self.url = url
        self.exchange = exchange
        self._connection: aio_pika.abc.AbstractConnection | None = None

    async def _conn(self) -> aio_pika.abc.AbstractConnection:
        if self._connection is None or self._connection.is_closed:
            self._connection = await aio_pika.connect(self.url)
        return self._connection

    async def _take(self, channel: aio_pika.abc.AbstractChannel, consumer: str,
                    limit: int) -> list[AbstractIncomingMessage]:
        try:
            queue = await channel.declare_queue(f"{self.exchange}.{consumer}.dlq", passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return []
        taken: list[AbstractIncomingMessage] = []
        while len(taken) < limit:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            taken.append(message)
        return taken

    async def list(self, consumer: str, limit: int = 1000) -> list[DeadLetter]:
        channel = await (await self._conn()).channel()
        try:
            return [_rabbit_letter(consumer, m) for m in await self._take(channel, consumer,
                                                                          limit)]
        finally:  # closing the channel hands every unacked message back to the queue
            if not channel.is_closed:
                await channel.close()

    async def replay(self, consumer: str, message_ids: set[str] | None) -> int:
        channel = await (await self._conn()).channel(publisher_confirms=True)
        replayed = 0
        try:
            for message in await self._take(channel, consumer, 100_000):
                if message_ids is not None and message.message_id not in message_ids:
                    continue
                headers = {k: v for k, v in (message.headers or {}).items()
                           if k not in ("x-death", "x-death-reason", "x-attempt")}
                await channel.default_exchange.publish(aio_pika.Message(
                    message.body, headers=headers, message_id=message.message_id,
                    correlation_id=message.correlation_id, content_type=message.content_type,
                    type=message.type, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=f"{self.exchange}.{consumer}")
                await message.ack()
                replayed += 1
        finally:
            if not channel.is_closed:
                await channel.close()
        return replayed

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


def _rabbit_letter(consumer: str, m: AbstractIncomingMessage) -> DeadLetter:
    headers = m.headers or {}
    reason = headers.get("x-death-reason")
    if not isinstance(reason, str | bytes):
        deaths = headers.get("x-death")
        first = deaths[0] if isinstance(deaths, list) and deaths else {}
        why = first.get("reason", "unknown") if isinstance(first, dict) else "unknown"
        reason = f"broker: {why.decode() if isinstance(why, bytes) else why}"
    attempt = headers.get("x-attempt")
    return DeadLetter(consumer, m.message_id or "", bytes(m.body),
                      reason.decode() if isinstance(reason, bytes) else reason,
                      attempt if isinstance(attempt, int) else None)


def store_for(settings: Settings, bus: Bus | None) -> DeadLetterStore:
    if settings.in_process_bus:
        return MemoryDeadLetters(bus)
    return RabbitDeadLetters(settings.amqp_url.get_secret_value(), settings.exchange)


def consumers_of(bus: Bus | None, settings: Settings) -> Sequence[str]:
    if settings.in_process_bus and bus is not None:
        return sorted(set(CONSUMERS) | set(getattr(bus, "_queues", {})))
    return CONSUMERS


router = APIRouter(prefix="/api/v1/deadletters", tags=["operations"],
                   dependencies=[Depends(current_principal)],
                   responses={401: {"model": Problem}, 403: {"model": Problem}})


def _store(request: Request) -> DeadLetterStore:
    found: DeadLetterStore = request.app.state.dead_letters
    return found


def _consumer(request: Request, consumer: str | None) -> list[str]:
    known = list(consumers_of(request.app.state.bus, request.app.state.settings))
    if consumer is None:
        return known
    if consumer not in known:
        raise HTTPException(404, "unknown consumer")
    return [consumer]


@router.get("", response_model=DeadLetterList, responses={404: {"model": Problem}})
async def list_dead_letters(request: Request, _: Administrator, consumer: str | None = None,
                            limit: int = Query(100, ge=1, le=1000)) -> DeadLetterList:
    letters: list[DeadLetterOut] = []
    depth: dict[str, int] = {}
    for name in _consumer(request, consumer):
        found = await _store(request).list(name, limit)
        depth[name] = len(found)
        letters += [d.summary() for d in found]
    return DeadLetterList(dead_letters=letters[:limit], depth=depth)


@router.get("/{consumer}/{message_id}", response_model=DeadLetterDetail,
            responses={404: {"model": Problem}})
async def show_dead_letter(consumer: str, message_id: str, request: Request,
                           _: Administrator) -> DeadLetterDetail:
    for name in _consumer(request, consumer):
        for letter in await _store(request).list(name):
            if letter.message_id == message_id:
                return letter.detail()
    raise HTTPException(404, "dead letter not found")


@router.post("/{consumer}/replay", response_model=ReplayResult,
             responses={404: {"model": Problem}})
async def replay_dead_letters(consumer: str, request: Request, s: Session,
                              admin: Administrator,
                              message_id: list[str] | None = Query(None)) -> ReplayResult:
    """Replay the named dead letters (`message_id`, repeatable), or all of the consumer's."""
    name = _consumer(request, consumer)[0]
    replayed = await _store(request).replay(name, set(message_id) if message_id else None)
    await audit.append(s, action="deadletter_replayed", actor=admin.name, details={
        "consumer": name, "message_ids": sorted(message_id or []), "replayed": replayed})
    await s.commit()
    if message_id and not replayed:
        raise HTTPException(404, "dead letter not found")
    return ReplayResult(replayed=replayed)
