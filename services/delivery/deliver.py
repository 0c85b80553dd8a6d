"""Delivering routed items to their unit's functional mailbox, exactly once per decision.

Like receipts: a `Delivery` row (keyed by the ItemRouted event) is committed as pending before
the send and marked sent after it, each in a short transaction, so no database lock is held
while talking to SMTP. A redelivered event finds the row sent and does nothing. The one window
for a second copy is a crash between the server's 250 and the commit of "sent"; that copy has
the same Message-ID, so mail clients show it once. Deliveries of one event within a process
are serialised by a lock, so prefetch cannot send twice either.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from dataclasses import replace

import structlog
from prometheus_client import Counter, Histogram

from shared import audit
from shared.blobs import BlobStore
from shared.contracts import ItemRouted, RouteOutcome
from shared.db import UnitOfWorkFactory
from shared.db.models import Delivery, Item, utcnow
from shared.errors import InvalidInput
from shared.mail import MailSender
from shared.tenant import Tenant

from .forward import Forward, compose, delivery_message_id

log = structlog.get_logger(__name__)

DELIVERIES = Counter("postfordeler_deliveries_total", "Items forwarded to units", ["result"])
ITEM_LATENCY = Histogram("postfordeler_item_delivery_seconds",
                         "Time from an item's arrival until its unit had it",
                         buckets=(0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600))


class Deliveries:
    def __init__(self, uow: UnitOfWorkFactory, tenant: Tenant, blobs: BlobStore,
                 sender: MailSender, from_address: str | None = None) -> None:
        self.uow = uow
        self.tenant = tenant
        self.blobs = blobs
        self.sender = sender
        self.from_address = from_address
        self._locks: weakref.WeakValueDictionary[uuid.UUID, asyncio.Lock] = (
            weakref.WeakValueDictionary())

    async def deliver(self, event: ItemRouted) -> bool:
        """Forward the item of `event` to its unit if that unit takes mail; True if sent now."""
        lock = self._locks.get(event.message_id)
        if lock is None:
            lock = self._locks[event.message_id] = asyncio.Lock()
        async with lock:
            return await self._deliver(event)

    async def _deliver(self, event: ItemRouted) -> bool:
        if event.outcome != RouteOutcome.ROUTED or not event.unit:
            return False  # triage and not-relevant items wait in the API
        unit = self.tenant.units.get(event.unit)
        if unit is None or not unit.mailbox:
            return False  # a unit without a functional mailbox works in the clerk API
        m = self.tenant.municipality
        async with self.uow() as uow:
            item = await uow.item(event.item_id, lock=False)
            if item.unit != event.unit:
                log.info("stale routing event skipped", unit=event.unit)
                return False  # re-routed since: the newer event delivers
            row = await uow.session.get(Delivery, event.message_id, with_for_update=True)
            if row is not None and row.status == "sent":
                return False
            if row is None:
                row = Delivery(id=event.message_id, item_id=item.id, unit=unit.id,
                               channel="smtp", recipient=unit.mailbox, status="pending",
                               message_id=delivery_message_id(event.message_id, m.domain),
                               attempts=0, created_at=utcnow())
                uow.session.add(row)
            row.attempts += 1
            forward = self._forward(event, item, unit.name, unit.mailbox)
            raw_sha256, created_at = item.raw_sha256, item.created_at
            await uow.commit()
        original = None
        if raw_sha256:
            try:
                original = await self.blobs.get(raw_sha256)
            except InvalidInput:  # purged by retention: the forward says where to look
                original = None
        await self.sender.send(compose(_with(forward, original)),
                               f"{event.item_id}-{event.message_id}")
        async with self.uow() as uow:
            row = await uow.session.get(Delivery, event.message_id, with_for_update=True)
            if row is None or row.status == "sent":  # pragma: no cover - a concurrent twin
                return False
            row.status, row.sent_at, row.last_error = "sent", utcnow(), None
            await audit.append(uow.session, action="delivered", actor="delivery",
                               item_id=event.item_id, unit=unit.id, clerk=event.clerk,
                               case_number=event.case_number,
                               details={"channel": "smtp", "recipient": unit.mailbox,
                                        "message_id": row.message_id, "attempts": row.attempts,
                                        "event_id": str(event.message_id)})
            await uow.commit()
        DELIVERIES.labels("sent").inc()
        if created_at is not None:
            aware = created_at if created_at.tzinfo else created_at.replace(tzinfo=utcnow().tzinfo)
            ITEM_LATENCY.observe(max(0.0, (utcnow() - aware).total_seconds()))
        log.info("item delivered", unit=unit.id, attempts=row.attempts)
        return True

    async def failed(self, event: ItemRouted, error: BaseException) -> None:
        """The bus gave up: the row says so (the clerk API shows it) and the audit log too."""
        DELIVERIES.labels("failed").inc()
        async with self.uow() as uow:
            row = await uow.session.get(Delivery, event.message_id, with_for_update=True)
            if row is None or row.status == "sent":
                return
            row.status, row.last_error = "failed", f"{type(error).__name__}: {error}"[:1000]
            await audit.append(uow.session, action="delivery_failed", actor="delivery",
                               item_id=event.item_id, unit=row.unit,
                               details={"recipient": row.recipient,
                                        "error": row.last_error[:300]})
            await uow.commit()

    def _forward(self, event: ItemRouted, item: Item, unit_name: str, to: str) -> Forward:
        m = self.tenant.municipality
        return Forward(
            event_id=event.message_id, item_id=item.id, domain=m.domain, from_name=m.name,
            from_address=self.from_address or m.main_mailbox, to=to, unit_id=event.unit or "",
            unit_name=unit_name, subject=item.subject or "", sender=item.sender,
            clerk=event.clerk, case_number=event.case_number or item.case_number,
            reasons=event.reasons, rerouted=event.producer.startswith("clerk:"),
            channel=item.channel, original=None,
            original_name=f"{item.id}.eml" if item.channel == "email" else str(item.id))


def _with(forward: Forward, original: bytes | None) -> Forward:
    return replace(forward, original=original)
