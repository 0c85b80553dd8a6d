"""Polling: take each waiting message from a mailbox into the system exactly once.

Per message: fetch -> store the raw bytes (fsynced) -> one transaction that dedupes and creates
the item with its ItemReceived in the outbox -> publish -> only then move the message at the
source. A crash anywhere leaves the message in the inbox; the next poll finds its SourceMessage
row and just moves it, so no message is lost and none becomes two items.

Mail that must never be answered (our own receipts coming back, bounces, auto-replies; see
`loops`) becomes an item that ends as not relevant at once, with the reason in its decision.

Each mailbox runs in its own loop: after a poll it waits for news (IMAP IDLE) or the poll
interval; a failing mailbox is retried with exponential back-off, its state goes to the
`mailbox_up` metric and the `mailbox_status` table (for /health/mailboxes), and the others
carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from shared import metrics
from shared.contracts import BlobRef, Channel, ItemEvent, ItemFailed, ItemReceived, ItemState
from shared.db import Item, SourceMessage, UnitOfWork
from shared.db.models import MailboxStatus, utcnow
from shared.errors import ConfigurationError, InvalidInput
from shared.runtime import Runtime
from shared.tenant import MailboxConfig

from . import loops, mime
from .mailboxes import Mailbox, open_mailbox
from .syncstate import DbSyncStore

log = structlog.get_logger(__name__)
PRODUCER = "ingest"
MAX_BACKOFF = 300.0
STATUS_EVERY = 60.0  # seconds between status rows of a healthy mailbox


class Outcome(Enum):
    NEW = "new"
    DUPLICATE = "duplicate"  # same Message-ID already taken in from this mailbox
    FAILED = "failed"  # not a mail: an item in state failed, message to the failed folder
    LOOP = "loop"  # an auto-reply, bounce or our own mail: ended as not relevant at once
    RESUMED = "resumed"  # stored by an earlier poll that crashed before the move


@dataclass
class PollReport:
    new: int = 0
    duplicates: int = 0
    failed: int = 0
    resumed: int = 0
    loops: int = 0
    errors: dict[str, str] = field(default_factory=dict)  # mailbox name -> error

    def count(self, outcome: Outcome) -> None:
        attr = {Outcome.NEW: "new", Outcome.DUPLICATE: "duplicates", Outcome.FAILED: "failed",
                Outcome.RESUMED: "resumed", Outcome.LOOP: "loops"}[outcome]
        setattr(self, attr, getattr(self, attr) + 1)

    def merge(self, other: PollReport) -> None:
        self.new += other.new
        self.duplicates += other.duplicates
        self.failed += other.failed
        self.resumed += other.resumed
        self.loops += other.loops
        self.errors.update(other.errors)


async def poll_once(runtime: Runtime) -> PollReport:
    """Poll every configured mailbox once; a failing mailbox is reported, not raised."""
    reports = await asyncio.gather(*(_poll_config(runtime, c) for c in runtime.tenant.mailboxes))
    total = PollReport()
    for report in reports:
        total.merge(report)
    return total


async def _poll_config(runtime: Runtime, config: MailboxConfig) -> PollReport:
    report = PollReport()
    try:
        mailbox = open_mailbox(config, runtime.settings.data_dir, DbSyncStore(runtime.uow))
    except Exception as exc:
        await _mailbox_down(runtime, config, exc, report, 1, 0.0)
        return report
    try:
        await poll_mailbox(runtime, mailbox, report)
        await _mailbox_up(runtime, config)
    except Exception as exc:
        await _mailbox_down(runtime, config, exc, report, 1, 0.0)
    finally:
        await mailbox.close()
    return report


async def _mailbox_up(runtime: Runtime, config: MailboxConfig) -> None:
    metrics.MAILBOX_UP.labels(config.name).set(1)
    await _record_status(runtime, config, None, 0, 0.0)


async def _mailbox_down(runtime: Runtime, config: MailboxConfig, exc: BaseException,
                        report: PollReport, failures: int, retry_in: float) -> None:
    metrics.MAILBOX_UP.labels(config.name).set(0)
    report.errors[config.name] = f"{type(exc).__name__}: {exc}"[:300]
    log.warning("mailbox poll failed", mailbox=config.name, error=report.errors[config.name],
                failures=failures, retry_in=retry_in)
    await _record_status(runtime, config, report.errors[config.name], failures, retry_in)


async def _record_status(runtime: Runtime, config: MailboxConfig, error: str | None,
                         failures: int, retry_in: float) -> None:
    """Best effort: health reporting must never stop a mailbox (the database may be the
    thing that is down)."""
    now = utcnow()
    try:
        async with runtime.uow() as uow:
            row = await uow.session.get(MailboxStatus, config.name)
            if row is None:
                row = MailboxStatus(name=config.name, kind=config.kind)
                uow.session.add(row)
            row.kind, row.up, row.failures, row.checked_at = config.kind, error is None, \
                failures, now
            row.last_error = error
            row.next_attempt_at = now + timedelta(seconds=retry_in) if error else None
            if error is None:
                row.last_ok_at = now
            await uow.commit()
    except Exception as exc:  # e.g. two processes inserting the first row at once
        log.warning("could not record mailbox status", mailbox=config.name,
                    error=type(exc).__name__)


def backoff(interval: float, failures: int) -> float:
    """Seconds before the next attempt after `failures` consecutive failures."""
    if not failures:
        return interval
    return float(min(interval * 2 ** (failures - 1), max(interval, MAX_BACKOFF)))


async def run_mailbox(runtime: Runtime, config: MailboxConfig) -> None:
    """Take mail in from one mailbox until cancelled. After a good poll it waits for news
    (IMAP IDLE up to the mailbox's idle_timeout, else `poll_interval`); after a
    failure it backs off exponentially up to MAX_BACKOFF with a fresh connection."""
    interval = runtime.settings.poll_interval
    failures = 0
    reported = float("-inf")
    mailbox: Mailbox | None = None
    try:
        while True:
            report = PollReport()
            try:
                mailbox = mailbox or open_mailbox(config, runtime.settings.data_dir,
                                                  DbSyncStore(runtime.uow))
                await poll_mailbox(runtime, mailbox, report)
                if failures or time.monotonic() - reported > STATUS_EVERY:
                    await _mailbox_up(runtime, config)
                    reported = time.monotonic()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                await _mailbox_down(runtime, config, exc, report, failures,
                                    backoff(interval, failures))
                if mailbox is not None:
                    await mailbox.close()
                    mailbox = None  # reconnect (and resync) from scratch
            if failures or mailbox is None:
                await asyncio.sleep(backoff(interval, failures))
                continue
            try:
                await mailbox.wait(interval)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the connection died while waiting: poll again now
                log.info("mailbox wait interrupted", mailbox=config.name,
                         error=type(exc).__name__)
                await mailbox.close()
                mailbox = None
    finally:
        if mailbox is not None:
            await mailbox.close()


async def poll_mailbox(runtime: Runtime, mailbox: Mailbox, report: PollReport) -> None:
    refs = await mailbox.list_new()
    # Several messages in flight, so fetching, parsing, fsyncing and committing overlap; the
    # mailbox adapters serialise their own connection. Items are still recorded in the
    # mailbox's order, so of two copies of one Message-ID the earlier stays the item.
    limit = asyncio.Semaphore(max(1, runtime.settings.ingest_concurrency))
    turns = _Turns(len(refs))

    async def one(n: int, ref: str) -> None:
        async with limit:  # FIFO: a task never waits for a turn that has no permit yet
            report.count(await ingest_message(runtime, mailbox, ref, in_order=turns.turn(n)))

    results = await asyncio.gather(*(one(n, ref) for n, ref in enumerate(refs)),
                                   return_exceptions=True)
    if errors := [r for r in results if isinstance(r, BaseException)]:
        raise errors[0]  # the mailbox is retried with back-off; the rest were taken in
    if refs:
        log.info("mailbox polled", mailbox=mailbox.name, messages=len(refs), new=report.new,
                 duplicates=report.duplicates, failed=report.failed, resumed=report.resumed)


class _Turns:
    """Lets concurrent tasks pass one step strictly in the order of their numbers."""

    def __init__(self, count: int) -> None:
        self._done = [asyncio.Event() for _ in range(count)]

    @contextlib.asynccontextmanager
    async def turn(self, n: int) -> AsyncIterator[None]:
        if n:
            await self._done[n - 1].wait()
        try:
            yield
        finally:
            self._done[n].set()


async def ingest_message(
    runtime: Runtime, mailbox: Mailbox, ref: str,
    in_order: contextlib.AbstractAsyncContextManager[None] | None = None,
) -> Outcome:
    """Take one message in; `in_order` is held while it is recorded in the database."""
    async with contextlib.AsyncExitStack() as stack:
        try:
            raw = await mailbox.fetch(ref)
            loop: loops.Loop | None = None
            try:
                summary: mime.MessageSummary | None = await asyncio.to_thread(
                    mime.summarize, raw)
                problem = ""
                loop = loops.detect(raw, own_domains(runtime))
            except InvalidInput as exc:
                summary, problem = None, str(exc)
            blob = await runtime.blobs.put(raw, "message/rfc822")
        finally:
            # Even when this message failed, the next one must get its turn.
            if in_order is not None:
                await stack.enter_async_context(in_order)
        try:
            outcome, emitted = await _store(runtime, mailbox.name, ref, blob, summary, problem,
                                            loop)
        except IntegrityError:
            # A concurrent poll stored this message (same ref) or another copy of it (same
            # Message-ID) first; a second look tells which.
            outcome, emitted = await _store(runtime, mailbox.name, ref, blob, summary, problem,
                                            loop)
            if outcome is Outcome.RESUMED:  # the other poll moves it
                log.info("message taken in concurrently", mailbox=mailbox.name,
                         source_ref=ref)
                return outcome
    await runtime.relay.publish(emitted)
    if outcome is Outcome.NEW:
        metrics.ITEMS_RECEIVED.labels(Channel.EMAIL.value).inc()
    elif outcome is Outcome.FAILED:
        metrics.ITEMS_FAILED.labels(PRODUCER).inc()
    elif outcome is Outcome.LOOP and loop is not None:
        metrics.LOOPS_STOPPED.labels(loop.kind.value).inc()
    if problem:
        await mailbox.mark_failed(ref)
    else:
        await mailbox.mark_processed(ref)
    return outcome


async def _store(runtime: Runtime, mailbox: str, ref: str, blob: BlobRef,
                 summary: mime.MessageSummary | None, problem: str,
                 loop: loops.Loop | None = None) -> tuple[Outcome, list[ItemEvent]]:
    async with runtime.uow() as uow:
        outcome = await _record(uow, mailbox, ref, blob, summary, problem, loop)
        if outcome is not Outcome.RESUMED:
            await uow.commit()
    return outcome, uow.emitted


async def _record(uow: UnitOfWork, mailbox: str, ref: str, blob: BlobRef,
                  summary: mime.MessageSummary | None, problem: str,
                  loop: loops.Loop | None = None) -> Outcome:
    seen = (await uow.session.execute(select(SourceMessage.id).where(
        SourceMessage.mailbox == mailbox, SourceMessage.source_ref == ref))).first()
    if seen is not None:
        return Outcome.RESUMED
    message_id = summary.message_id if summary else None
    if message_id:
        first = (await uow.session.execute(select(SourceMessage.item_id).where(
            SourceMessage.mailbox == mailbox, SourceMessage.message_id == message_id,
            SourceMessage.duplicate.is_(False)).limit(1))).scalar_one_or_none()
        if first is not None:
            uow.session.add(SourceMessage(mailbox=mailbox, source_ref=ref, message_id=message_id,
                                          item_id=first, duplicate=True))
            log.info("duplicate message-id", mailbox=mailbox, source_ref=ref,
                     item_id=str(first))
            return Outcome.DUPLICATE
    item = Item(id=uuid.uuid4(), correlation_id=uuid.uuid4(), channel=Channel.EMAIL.value,
                mailbox=mailbox, source_ref=ref, message_id=message_id, raw_sha256=blob.sha256,
                subject=summary.subject if summary else None,
                sender=(summary.sender.address or None) if summary else None)
    uow.session.add(item)
    uow.session.add(SourceMessage(mailbox=mailbox, source_ref=ref, message_id=message_id,
                                  item_id=item.id))
    if summary is None:
        item.failure_reason = problem
        failed = ItemFailed(correlation_id=item.correlation_id, producer=PRODUCER,
                            item_id=item.id, stage=PRODUCER, reason=problem)
        uow.transition(item, ItemState.FAILED, reason=problem, event=failed)
        uow.emit(failed)
        log.warning("unparseable message", mailbox=mailbox, source_ref=ref,
                    item_id=str(item.id), reason=problem)
        return Outcome.FAILED
    if loop is not None:
        # Terminal at once: never extracted, routed or answered. No event: nothing downstream
        # has anything to do, and the reconciler leaves terminal items alone.
        reason = f"loop protection: {loop.reason}"
        item.decision = {"outcome": ItemState.NOT_RELEVANT.value, "loop": loop.kind.value,
                         "receipt": False, "reasons": [reason]}
        uow.transition(item, ItemState.NOT_RELEVANT, reason=reason, producer=PRODUCER)
        log.info("loop stopped", mailbox=mailbox, source_ref=ref, item_id=str(item.id),
                 loop=loop.kind.value)
        return Outcome.LOOP
    received = ItemReceived(correlation_id=item.correlation_id, producer=PRODUCER,
                            item_id=item.id, channel=Channel.EMAIL, mailbox=mailbox,
                            source_ref=ref, raw=blob)
    uow.transition(item, ItemState.RECEIVED, event=received)
    uow.emit(received)
    log.info("item received", mailbox=mailbox, source_ref=ref, item_id=str(item.id))
    return Outcome.NEW


def own_domains(runtime: Runtime) -> tuple[str, ...]:
    """The domains our own mail is sent from: the municipality's and the mailboxes'."""
    domains: set[str] = set()
    with contextlib.suppress(ConfigurationError):  # no org.yaml: the mailboxes still tell
        domains.add(runtime.tenant.municipality.domain.lower())
    for config in runtime.tenant.mailboxes:
        if "@" in config.address:
            domains.add(config.address.rsplit("@", 1)[1].lower())
    return tuple(sorted(domains))
