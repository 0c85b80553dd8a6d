"""Delivering routed items to their unit the way the unit works, exactly once per decision:
forwarded by SMTP to the unit's functional mailbox, and/or put into a folder of a mailbox
(org.yaml `delivery`; see folders.py).

Like receipts: a `Delivery` row per channel (keyed by the ItemRouted event; the folder copy's
row by a UUID derived from it) is committed as pending before the send and marked sent after
it, each in a short transaction, so no database lock is held while talking to SMTP or a mail
server. A redelivered event finds the row sent and does nothing. For SMTP the one window for a
second copy is a crash between the server's 250 and the commit of "sent"; that copy has the
same Message-ID, so mail clients show it once. A folder writer looks for the copy's Message-ID
before storing, so there that window leaves no second copy at all. Deliveries of one event
within a process are serialised by a lock, so prefetch cannot send twice either.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime

import structlog
from prometheus_client import Counter, Histogram

from shared import audit
from shared.blobs import BlobStore
from shared.contracts import ItemRouted, RouteOutcome
from shared.db import UnitOfWorkFactory
from shared.db.models import Delivery, Item, utcnow
from shared.errors import ConfigurationError, InvalidInput
from shared.mail import MailSender
from shared.tenant import FolderTarget, Tenant, Unit

from .folders import FolderWriter, open_writer
from .forward import Forward, compose, delivery_message_id, folder_message_id
from .notice import compose_notice

log = structlog.get_logger(__name__)

DELIVERIES = Counter("postfordeler_deliveries_total", "Items delivered to units", ["result"])
ITEM_LATENCY = Histogram("postfordeler_item_delivery_seconds",
                         "Time from an item's arrival until its unit had it",
                         buckets=(0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600))
WriterFactory = Callable[[str], FolderWriter]


def folder_row_id(event_id: uuid.UUID) -> uuid.UUID:
    """The Delivery row of an event's folder copy (the forward's row is the event id)."""
    return uuid.uuid5(event_id, "folder")


def _not_read_by_ingest(tenant: Tenant, unit: str, folder: FolderTarget) -> None:
    """A copy put into the folder ingest reads (or its processed/failed folder) would be taken
    in again as our own mail and moved away: the unit would never see it there."""
    if any(m.name == folder.mailbox for m in tenant.delivery_mailboxes):
        return  # delivery_mailbox() takes that one: ingest does not read it

    def norm(path: str) -> str:
        return "/".join(p for p in path.strip().casefold().split("/") if p)
    for config in tenant.mailboxes:
        if config.name == folder.mailbox and norm(folder.path) in {
                norm(config.folder), norm(config.processed_folder), norm(config.failed_folder)}:
            raise ConfigurationError(
                f"unit {unit}: delivery folder {folder.path!r} of mailbox {folder.mailbox} is "
                "one ingest reads or files into; choose another folder")


@dataclass(frozen=True)
class _Target:
    row_id: uuid.UUID
    channel: str  # smtp, imap, ews, graph
    recipient: str  # the address, or "mailbox:folder/path"
    to: str
    message_id: str
    send: Callable[[Forward], Awaitable[bool]]  # True if stored now, False if there already


class Deliveries:
    def __init__(self, uow: UnitOfWorkFactory, tenant: Tenant, blobs: BlobStore,
                 sender: MailSender, from_address: str | None = None,
                 writers: WriterFactory | None = None) -> None:
        self.uow = uow
        self.tenant = tenant
        self.blobs = blobs
        self.sender = sender
        self.from_address = from_address
        self._make_writer = writers or (lambda name: open_writer(tenant.delivery_mailbox(name)))
        self._writers: dict[str, FolderWriter] = {}
        self._locks: weakref.WeakValueDictionary[uuid.UUID, asyncio.Lock] = (
            weakref.WeakValueDictionary())

    async def deliver(self, event: ItemRouted) -> bool:
        """Forward the item of `event` to its unit if that unit takes mail; True if sent now."""
        lock = self._locks.get(event.message_id)
        if lock is None:
            lock = self._locks[event.message_id] = asyncio.Lock()
        async with lock:
            return await self._deliver(event)

    def check(self) -> None:
        """Every unit's folder names a known mailbox whose configuration a writer accepts, and
        is not a folder ingest reads or files into (a ConfigurationError at start if not).
        Making a writer connects nowhere."""
        for unit in self.tenant.units.values():
            if (folder := unit.delivery.folder) is not None:
                self._writer(folder.mailbox)
                _not_read_by_ingest(self.tenant, unit.id, folder)

    async def close(self) -> None:
        writers, self._writers = list(self._writers.values()), {}
        for writer in writers:
            try:
                await writer.close()
            except Exception:  # a broken connection may fail to close too
                log.debug("ignored error while closing a folder writer", exc_info=True)

    def _writer(self, name: str) -> FolderWriter:
        if name not in self._writers:
            self._writers[name] = self._make_writer(name)
        return self._writers[name]

    def _targets(self, event: ItemRouted, unit: Unit) -> list[_Target]:
        domain = self.tenant.municipality.domain
        targets = []
        if unit.mailbox and unit.delivery.forward:
            async def forward(f: Forward) -> bool:
                await self.sender.send(compose_notice(f) if f.sensitive else compose(f),
                                       f"{event.item_id}-{event.message_id}")
                return True
            targets.append(_Target(event.message_id, "smtp", unit.mailbox, unit.mailbox,
                                   delivery_message_id(event.message_id, domain), forward))
        if (folder := unit.delivery.folder) is not None:
            targets.append(self._folder_target(event, unit, folder))
        return targets

    def _folder_target(self, event: ItemRouted, unit: Unit, folder: FolderTarget) -> _Target:
        config = self.tenant.delivery_mailbox(folder.mailbox)
        to = config.address or unit.mailbox or self.tenant.municipality.main_mailbox

        async def put(f: Forward) -> bool:
            return await self._writer(folder.mailbox).put(folder.path, f)
        return _Target(folder_row_id(event.message_id), config.kind,
                       f"{folder.mailbox}:{folder.path}"[:320], to,
                       folder_message_id(event.message_id, self.tenant.municipality.domain),
                       put)

    async def _deliver(self, event: ItemRouted) -> bool:
        if event.outcome != RouteOutcome.ROUTED or not event.unit:
            return False  # triage and not-relevant items wait in the API
        unit = self.tenant.units.get(event.unit)
        if unit is None:
            return False
        delivered = None
        # One channel after the other: when one fails the event is retried, and the channels
        # already done find their rows sent.
        for target in self._targets(event, unit):  # none: the unit works in the clerk API
            if (done := await self._once(event, unit, target)) is not None:
                delivered = done
        if delivered is not None:
            aware = delivered if delivered.tzinfo else delivered.replace(tzinfo=utcnow().tzinfo)
            ITEM_LATENCY.observe(max(0.0, (utcnow() - aware).total_seconds()))
        return delivered is not None

    async def _once(self, event: ItemRouted, unit: Unit, target: _Target) -> datetime | None:
        """One channel; the item's arrival time if delivered now, else None."""
        async with self.uow() as uow:
            item = await uow.item(event.item_id, lock=False)
            if item.unit != event.unit:
                log.info("stale routing event skipped", unit=event.unit)
                return None  # re-routed since: the newer event delivers
            row = await uow.session.get(Delivery, target.row_id, with_for_update=True)
            if row is not None and row.status == "sent":
                return None
            if row is None:
                row = Delivery(id=target.row_id, item_id=item.id, unit=unit.id,
                               channel=target.channel, recipient=target.recipient,
                               status="pending", message_id=target.message_id,
                               attempts=0, created_at=utcnow())
                uow.session.add(row)
            row.attempts += 1
            forward = self._forward(event, item, unit.name, target.to, target.message_id)
            raw_sha256, created_at = item.raw_sha256, item.created_at
            await uow.commit()
        original = None
        if raw_sha256:
            try:
                original = await self.blobs.get(raw_sha256)
            except InvalidInput:  # purged by retention: the copy says where to look
                original = None
        stored = await target.send(replace(forward, original=original))
        async with self.uow() as uow:
            row = await uow.session.get(Delivery, target.row_id, with_for_update=True)
            if row is None or row.status == "sent":  # pragma: no cover - a concurrent twin
                return None
            row.status, row.sent_at, row.last_error = "sent", utcnow(), None
            details = {"channel": target.channel, "recipient": target.recipient,
                       "message_id": row.message_id, "attempts": row.attempts,
                       "event_id": str(event.message_id)}
            if not stored:  # stored by an attempt that crashed before it was recorded
                details["found_in_folder"] = True
            await audit.append(uow.session, action="delivered", actor="delivery",
                               item_id=event.item_id, unit=unit.id, clerk=event.clerk,
                               case_number=event.case_number, details=details)
            await uow.commit()
        DELIVERIES.labels("sent").inc()
        log.info("item delivered", unit=unit.id, channel=target.channel, attempts=row.attempts)
        return created_at

    async def failed(self, event: ItemRouted, error: BaseException) -> None:
        """The bus gave up: the row says so (the clerk API shows it) and the audit log too."""
        DELIVERIES.labels("failed").inc()
        async with self.uow() as uow:
            for row_id in (event.message_id, folder_row_id(event.message_id)):
                row = await uow.session.get(Delivery, row_id, with_for_update=True)
                if row is None or row.status == "sent":
                    continue
                row.status, row.last_error = "failed", f"{type(error).__name__}: {error}"[:1000]
                await audit.append(uow.session, action="delivery_failed", actor="delivery",
                                   item_id=event.item_id, unit=row.unit,
                                   details={"channel": row.channel, "recipient": row.recipient,
                                            "error": row.last_error[:300]})
            await uow.commit()

    def _forward(self, event: ItemRouted, item: Item, unit_name: str, to: str,
                 message_id: str) -> Forward:
        m = self.tenant.municipality
        return Forward(
            event_id=event.message_id, item_id=item.id, domain=m.domain, from_name=m.name,
            from_address=self.from_address or m.main_mailbox, to=to, unit_id=event.unit or "",
            unit_name=unit_name, subject=item.subject or "", sender=item.sender,
            clerk=event.clerk, case_number=event.case_number or item.case_number,
            reasons=event.reasons, rerouted=event.producer.startswith("clerk:"),
            channel=item.channel, original=None,
            original_name=f"{item.id}.eml" if item.channel == "email" else str(item.id),
            sensitive=event.sensitive, message_id=message_id)
