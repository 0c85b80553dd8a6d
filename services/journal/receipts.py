"""Sending receipts exactly once, and retrying them with back-off while SMTP is down.

A `Receipt` row is committed as pending before the send and marked sent after it, each in its
own short transaction (no database lock is held while talking to the SMTP server). Before each
attempt the row is leased (`next_attempt_at` moved past the SMTP timeout), so only one process
sends at a time; a retry that finds the row sent, failed or leased does nothing. The only window
for a second copy is a crash between the SMTP server's 250 and the commit of "sent"; the copy
then carries the same deterministic Message-ID, so mail clients show it once.

SMTP down (or refusing with 4xx): the attempt is recorded (attempts, last error, next attempt
time, visible on the item through the API) and `retry_due`, run periodically by the journal,
tries again with doubling delays; after `max_attempts` the receipt is failed and audited.
A 5xx refusal of the recipient fails it at once.

A rule's named receipt template (`ItemRouted.receipt_template`) chooses the template; one the
tenant no longer has falls back to the usual choice with a `receipt_template_missing` audit
entry on the item.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared import audit, metrics
from shared.contracts import ItemRouted, RouteOutcome, parse_event
from shared.db import UnitOfWorkFactory
from shared.db.models import Item, Receipt, utcnow
from shared.errors import PermanentError, TransientError
from shared.mail import MailSender
from shared.settings import Settings
from shared.tenant import Tenant

from .receipt_text import (
    ReceiptContent,
    ReceiptTemplates,
    compose,
    form_id_of,
    is_auto_reply,
    receipt_due,
    receipt_message_id,
)

log = structlog.get_logger(__name__)


ReceiptSender = MailSender  # receipts are named after their item in a pickup directory


@dataclass(frozen=True)
class RetryPolicy:
    base: float = 30.0
    max_delay: float = 3600.0
    max_attempts: int = 12
    lease: float = 60.0  # longer than one SMTP attempt can take

    @classmethod
    def from_settings(cls, s: Settings) -> RetryPolicy:
        return cls(s.receipt_retry_base, s.receipt_retry_max_delay, s.receipt_max_attempts,
                   s.smtp_timeout + 30.0)

    def delay(self, attempts: int) -> float:
        return min(self.base * 2 ** max(attempts - 1, 0), self.max_delay)


def _aware(at: datetime | None) -> datetime | None:
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


class Receipts:
    def __init__(self, uow: UnitOfWorkFactory, tenant: Tenant, sender: ReceiptSender, *,
                 policy: RetryPolicy | None = None,
                 templates: ReceiptTemplates | None = None) -> None:
        self.uow = uow
        self.tenant = tenant
        self.sender = sender
        self.policy = policy or RetryPolicy()
        self.templates = templates or ReceiptTemplates(tenant.directory)
        self._locks: weakref.WeakValueDictionary[uuid.UUID, asyncio.Lock] = (
            weakref.WeakValueDictionary())

    async def deliver(self, event: ItemRouted) -> bool:
        """Send the receipt for `event` if one is due, not yet sent and not waiting for its
        next attempt; True if sent now."""
        lock = self._locks.get(event.item_id)
        if lock is None:
            lock = self._locks[event.item_id] = asyncio.Lock()
        async with lock:
            return await self._deliver(event)

    async def retry_due(self, limit: int = 50) -> int:
        """Retry waiting receipts whose next attempt is due; returns how many were sent."""
        async with self.uow() as uow:
            rows = (await uow.session.execute(
                select(Receipt.event).where(Receipt.status == "pending",
                                            Receipt.next_attempt_at <= utcnow(),
                                            Receipt.event.is_not(None))
                .order_by(Receipt.next_attempt_at).limit(limit))).scalars().all()
        sent = 0
        for payload in rows:
            event = parse_event(payload or "")
            if isinstance(event, ItemRouted):
                sent += await self.deliver(event)
        return sent

    async def _deliver(self, event: ItemRouted) -> bool:
        domain = self.tenant.municipality.domain
        now = utcnow()
        async with self.uow() as uow:
            item = await uow.item(event.item_id, lock=False)
            if not receipt_due(event, item.sender, auto_reply=is_auto_reply(item.entities)):
                return False
            row = await uow.session.get(Receipt, item.id, with_for_update=True)
            if row is None:
                row = Receipt(item_id=item.id, message_id=receipt_message_id(item.id, domain),
                              recipient=(item.sender or "").strip(), status="pending",
                              attempts=0, event=event.model_dump_json())
                uow.session.add(row)
            elif row.status != "pending" or (_aware(row.next_attempt_at) or now) > now:
                return False  # sent, failed, being sent elsewhere or waiting for back-off
            row.attempts += 1
            row.next_attempt_at = now + timedelta(seconds=self.policy.lease)
            template = await self._template(uow.session, event)
            content = self._content(item, event, row.recipient, template)
            await uow.commit()
        try:
            await self.sender.send(compose(content, self.templates), str(event.item_id))
        except (TransientError, PermanentError) as exc:
            await self._failed_attempt(event, exc)
            return False
        async with self.uow() as uow:
            row = await uow.session.get(Receipt, event.item_id, with_for_update=True)
            if row is None or row.status == "sent":  # pragma: no cover - a concurrent twin
                return False
            row.status, row.sent_at, row.next_attempt_at = "sent", utcnow(), None
            await audit.append(uow.session, action="receipt_sent", actor="journal",
                               item_id=event.item_id, unit=event.unit, sender=row.recipient,
                               details={"message_id": row.message_id, "attempts": row.attempts})
            await uow.commit()
        metrics.RECEIPTS_SENT.inc()
        log.info("receipt sent", item_id=str(event.item_id), attempts=row.attempts)
        return True

    async def _failed_attempt(self, event: ItemRouted, exc: Exception) -> None:
        async with self.uow() as uow:
            row = await uow.session.get(Receipt, event.item_id, with_for_update=True)
            if row is None or row.status != "pending":  # pragma: no cover
                return
            row.last_error = f"{type(exc).__name__}: {exc}"[:500]
            final = isinstance(exc, PermanentError) or row.attempts >= self.policy.max_attempts
            if final:
                row.status, row.next_attempt_at = "failed", None
                await audit.append(uow.session, action="receipt_failed", actor="journal",
                                   item_id=event.item_id, unit=event.unit, sender=row.recipient,
                                   details={"message_id": row.message_id,
                                            "attempts": row.attempts, "error": row.last_error})
            else:
                row.next_attempt_at = utcnow() + timedelta(
                    seconds=self.policy.delay(row.attempts))
            await uow.commit()
            attempts, waiting = row.attempts, row.next_attempt_at
        log.warning("receipt not sent", item_id=str(event.item_id), attempts=attempts,
                    final=final, retry_at=str(waiting) if waiting else None,
                    error=type(exc).__name__)

    async def _template(self, session: AsyncSession, event: ItemRouted) -> str | None:
        """The rule's named template, or None for the usual choice when the tenant no longer
        has it (the API refused unknown names when the rule was saved; a file removed since,
        or a rules.yaml never checked, gets here). That is recorded on the item, once."""
        name = event.receipt_template
        if name is None or name in self.templates.named():
            return name
        log.warning("receipt template missing; the default is used", template=name,
                    item_id=str(event.item_id))
        if not await audit.recorded(session, event.item_id, "receipt_template_missing"):
            await audit.append(session, action="receipt_template_missing", actor="journal",
                               item_id=event.item_id, unit=event.unit,
                               details={"template": name, "used": "default"})
        return None

    def _content(self, item: Item, event: ItemRouted, to: str,
                 template: str | None = None) -> ReceiptContent:
        m = self.tenant.municipality
        routed = event.outcome == RouteOutcome.ROUTED
        unit = self.tenant.units.get(event.unit or "") if routed else None
        return ReceiptContent(item_id=item.id, to=to, subject=item.subject or "",
                              municipality=m.name, domain=m.domain, from_address=m.main_mailbox,
                              unit_name=unit.name if unit else None, in_reply_to=item.message_id,
                              unit_id=unit.id if unit else None,
                              form_id=form_id_of(item.channel, item.mailbox, item.entities),
                              template=template)
