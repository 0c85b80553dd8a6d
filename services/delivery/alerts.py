"""Operations alerts by e-mail: items that failed, mailboxes unreachable for too long, and a
growing dead-letter queue; each kind at most once per `ops_alert_interval`.

State lives in the `alert_state` table (when each kind was last sent, and a watermark), so
the limit holds across restarts and across processes: the row is locked while deciding, and
only the process that advanced `last_sent_at` sends. Alert texts carry ids, states and error
names, never message contents.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import structlog
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from shared.bus import CONSUMERS, Bus
from shared.db import UnitOfWork, UnitOfWorkFactory
from shared.db.models import AlertState, Item, utcnow
from shared.mail import MailSender
from shared.settings import Settings

log = structlog.get_logger(__name__)



@dataclass(frozen=True)
class Alert:
    kind: str
    subject: str
    lines: tuple[str, ...]
    value: int = 0  # the dead-letter total, remembered to measure growth


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=utcnow().tzinfo)


class Monitor:
    def __init__(self, uow: UnitOfWorkFactory, bus: Bus, sender: MailSender,
                 settings: Settings, from_address: str,
                 consumers: Sequence[str] = CONSUMERS,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.uow = uow
        self.bus = bus
        self.sender = sender
        self.settings = settings
        self.from_address = from_address
        self.consumers = consumers
        self.clock = clock
        self.interval = timedelta(seconds=settings.ops_alert_interval)

    async def check(self) -> list[str]:
        """One round of checks; returns the kinds of alert sent."""
        sent = []
        for probe in (self._failed_items, self._mailboxes, self._dead_letters):
            alert = await probe()
            if alert is not None and await self._send(alert):
                sent.append(alert.kind)
        return sent

    async def _state(self, uow: UnitOfWork, kind: str) -> AlertState:
        session = uow.session
        row = await session.get(AlertState, kind, with_for_update=True)
        if row is None:
            row = AlertState(kind=kind, last_value=0)
            session.add(row)
            await session.flush()
        return row

    def _due(self, row: AlertState, now: datetime) -> bool:
        return row.last_sent_at is None or now - _aware(row.last_sent_at) >= self.interval

    async def _failed_items(self) -> Alert | None:
        now = self.clock()
        async with self.uow() as uow:
            row = await self._state(uow, "item_failed")
            since = _aware(row.checked_at) if row.checked_at else now - self.interval
            if not self._due(row, now):
                return None
            failed = (await uow.session.execute(
                select(Item.id, Item.mailbox, Item.failure_reason, Item.updated_at).where(
                    Item.state == "failed", Item.updated_at > since)
                .order_by(Item.updated_at).limit(51))).all()
            if not failed:
                return None
            row.checked_at = max(_aware(f.updated_at) for f in failed)  # the watermark
            await uow.commit()
        lines = [f"{item_id}  mailbox {mailbox}: {(reason or '')[:200]}"
                 for item_id, mailbox, reason, _ in failed[:50]]
        more = ["... and more"] if len(failed) > 50 else []
        return Alert("item_failed", f"{min(len(failed), 50)}{'+' if more else ''} item(s) "
                     "failed", (*lines, *more))

    async def _mailboxes(self) -> Alert | None:
        now = self.clock()
        limit = timedelta(seconds=self.settings.ops_mailbox_down_after)
        try:
            async with self.uow() as uow:
                rows = (await uow.session.execute(text(
                    "SELECT name, last_ok_at, last_error FROM mailbox_status "
                    "WHERE up = :up"), {"up": False})).all()
        except DBAPIError:  # no ingest status table in this database (yet)
            return None
        down = []
        async with self.uow() as uow:
            for name, last_ok_at, error in rows:
                seen = await self._state(uow, f"mailbox_seen_down:{name}")
                seen.checked_at = seen.checked_at or now  # first time seen down
                since = max(_aware(seen.checked_at), _aware(_parse(last_ok_at))) \
                    if last_ok_at else _aware(seen.checked_at)
                if now - since >= limit:
                    down.append(f"{name}: unreachable since {since:%Y-%m-%d %H:%M} UTC "
                                f"({(error or '')[:200]})")
            for stale in (await uow.session.execute(select(AlertState).where(
                    AlertState.kind.startswith("mailbox_seen_down:")))).scalars():
                if stale.kind.split(":", 1)[1] not in {r[0] for r in rows}:
                    await uow.session.delete(stale)  # up again: start afresh next time
            await uow.commit()
        if not down:
            return None
        return Alert("mailbox_down", f"{len(down)} mailbox(es) unreachable", tuple(down))

    async def _dead_letters(self) -> Alert | None:
        depths = {c: await self.bus.dead_letter_count(c) for c in self.consumers}
        total = sum(depths.values())
        async with self.uow() as uow:
            row = await self._state(uow, "dead_letters")
            grew = total > row.last_value and total > self.settings.ops_dlq_threshold
            if not grew:
                row.last_value = total  # replayed or purged: measure growth from here
                await uow.commit()
                return None
            await uow.commit()
        lines = tuple(f"{c}: {n}" for c, n in depths.items() if n)
        return Alert("dead_letters", f"dead-letter queues hold {total} message(s)",
                     (*lines, "", "postfordeler deadletter list  shows them; "
                      "postfordeler deadletter replay  puts them back."), total)

    async def _send(self, alert: Alert) -> bool:
        """Claim the kind's slot for this interval, then send; give it back on failure."""
        now = self.clock()
        async with self.uow() as uow:
            row = await self._state(uow, alert.kind)
            if not self._due(row, now):
                return False
            previous, row.last_sent_at = row.last_sent_at, now
            if alert.kind == "dead_letters":
                row.last_value = alert.value
            await uow.commit()
        if not self.settings.ops_alert_to:
            log.warning("operations alert (no ops_alert_to configured)", kind=alert.kind,
                        subject=alert.subject)
            return True
        try:
            await self.sender.send(self._message(alert, now), f"alert-{alert.kind}-"
                                   f"{now:%Y%m%dT%H%M%S}")
        except Exception:
            log.exception("alert e-mail failed", kind=alert.kind)
            async with self.uow() as uow:
                row = await self._state(uow, alert.kind)
                row.last_sent_at = previous
                await uow.commit()
            return False
        log.warning("operations alert sent", kind=alert.kind, subject=alert.subject)
        return True

    def _message(self, alert: Alert, now: datetime) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.from_address
        msg["To"] = self.settings.ops_alert_to
        msg["Subject"] = f"[Postfordeler alert] {alert.subject}"
        msg["Date"] = format_datetime(now)
        msg["Message-ID"] = make_msgid("postfordeler-alert")
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-Postfordeler-Alert"] = alert.kind
        every = int(self.interval.total_seconds())
        msg.set_content("\n".join((*alert.lines, "",
                                   f"(At most one alert of this kind every {every} s.)")) + "\n")
        return msg


def _parse(value: object) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))
