"""Receipts ("kvittering") to the sender: composing, deciding who gets one, and sending.

Exactly-once as far as SMTP allows: a `Receipt` row is committed as pending before the send and
marked sent after it, each in its own short transaction (no database lock is held while talking
to the SMTP server). A retry that finds the row sent does nothing. The only window for a second
copy is a crash between the SMTP server's 250 and the commit of "sent"; the copy then carries the
same deterministic Message-ID, so mail clients show it once.

Two deliveries of the same event in one process (a broker redelivery while the first is still
in flight, prefetch > 1) are serialised by a per-item lock, so the second finds the row sent.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import uuid
import weakref
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any, Protocol

import aiosmtplib
import structlog
from jinja2 import Environment, StrictUndefined

from shared import audit, metrics
from shared.contracts import ItemRouted, RouteOutcome
from shared.db import UnitOfWorkFactory
from shared.db.models import Item, Receipt, utcnow
from shared.errors import PermanentError, TransientError
from shared.settings import Settings
from shared.tenant import Tenant

log = structlog.get_logger(__name__)

_NO_REPLY = re.compile(
    r"^(no-?reply|do-?not-?reply|mailer-daemon|postmaster|bounces?|auto-?reply)([+._-].*)?@",
    re.IGNORECASE)

_TEXT = """\
Kære afsender

Tak for din henvendelse til {{ municipality }}. Vi har modtaget den {{ received }}.

Emne: {{ subject }}
Referencenummer: {{ reference }}

{% if unit %}Din henvendelse er sendt videre til {{ unit }}, som behandler den.
{% else %}Din henvendelse bliver nu fordelt til den rette afdeling.
{% endif %}
Oplys venligst referencenummeret, hvis du kontakter os om sagen.

Dette er en automatisk kvittering. Du kan ikke svare på denne mail.

Med venlig hilsen
{{ municipality }}
"""

_HTML = """\
<!DOCTYPE html>
<html lang="da"><body>
<p>Kære afsender</p>
<p>Tak for din henvendelse til {{ municipality }}. Vi har modtaget den {{ received }}.</p>
<p>Emne: {{ subject }}<br>Referencenummer: <strong>{{ reference }}</strong></p>
<p>{% if unit %}Din henvendelse er sendt videre til {{ unit }}, som behandler den.
{%- else %}Din henvendelse bliver nu fordelt til den rette afdeling.{% endif %}</p>
<p>Oplys venligst referencenummeret, hvis du kontakter os om sagen.</p>
<p><em>Dette er en automatisk kvittering. Du kan ikke svare på denne mail.</em></p>
<p>Med venlig hilsen<br>{{ municipality }}</p>
</body></html>
"""

_text_env = Environment(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True)  # noqa: S701 - plain text
_html_env = Environment(autoescape=True, undefined=StrictUndefined)
TEXT_TEMPLATE = _text_env.from_string(_TEXT)
HTML_TEMPLATE = _html_env.from_string(_HTML)


def receipt_message_id(item_id: uuid.UUID, domain: str) -> str:
    return f"<receipt-{item_id}@{domain}>"


def reference(item_id: uuid.UUID) -> str:
    """Short reference for people; the full item id is in the X-Postfordeler-Item header."""
    return f"PF-{item_id.hex[:10].upper()}"


def is_auto_reply(entities: list[dict[str, Any]] | None) -> bool:
    return any(e.get("kind") == "auto_reply" for e in entities or [])


def receipt_due(event: ItemRouted, sender: str | None, *, auto_reply: bool = False) -> bool:
    """A receipt goes to a human sender of an item we keep (never to robots or bounces)."""
    if not event.receipt or event.outcome == RouteOutcome.NOT_RELEVANT or auto_reply:
        return False
    address = (sender or "").strip()
    return "@" in address and not _NO_REPLY.match(address)


@dataclass(frozen=True)
class ReceiptContent:
    item_id: uuid.UUID
    to: str
    subject: str
    municipality: str
    domain: str
    from_address: str
    unit_name: str | None = None
    in_reply_to: str | None = None


def compose(c: ReceiptContent) -> EmailMessage:
    received = utcnow()
    values = {"municipality": c.municipality, "subject": c.subject or "(intet emne)",
              "reference": reference(c.item_id), "unit": c.unit_name,
              "received": received.strftime("%d.%m.%Y")}
    msg = EmailMessage()
    msg["From"] = formataddr((c.municipality, c.from_address))
    msg["To"] = c.to
    msg["Subject"] = f"Kvittering for modtagelse: {c.subject}" if c.subject else \
        "Kvittering for modtagelse"
    msg["Date"] = format_datetime(received)
    msg["Message-ID"] = receipt_message_id(c.item_id, c.domain)
    if c.in_reply_to:
        ref = c.in_reply_to if c.in_reply_to.startswith("<") else f"<{c.in_reply_to}>"
        msg["In-Reply-To"] = ref
        msg["References"] = ref
    # RFC 3834: a robot's answer; mail servers and clients must not auto-reply to it.
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"
    msg["X-Postfordeler-Item"] = str(c.item_id)
    msg.set_content(TEXT_TEMPLATE.render(values))
    msg.add_alternative(HTML_TEMPLATE.render(values), subtype="html")
    return msg


class ReceiptSender(Protocol):
    async def send(self, msg: EmailMessage, item_id: uuid.UUID) -> None: ...


class SmtpSender:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, msg: EmailMessage, item_id: uuid.UUID) -> None:
        s = self.settings
        try:
            await aiosmtplib.send(
                msg, hostname=s.smtp_host, port=s.smtp_port, username=s.smtp_username,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                start_tls=s.smtp_starttls, timeout=s.smtp_timeout)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            if all(r.code >= 500 for r in exc.recipients):
                raise PermanentError(f"SMTP refused the recipient ({exc.recipients[0].code})") \
                    from exc
            raise TransientError(f"SMTP refused the recipient: {exc}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TransientError(f"SMTP {s.smtp_host}:{s.smtp_port}: {exc}") from exc


class PickupDirSender:
    """No SMTP server configured: write `<item id>.eml` into a pickup directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    async def send(self, msg: EmailMessage, item_id: uuid.UUID) -> None:
        await asyncio.to_thread(self._write, msg.as_bytes(), f"{item_id}.eml")

    def _write(self, data: bytes, name: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".eml")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.directory / name)  # atomic: a pickup agent never sees half
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def make_sender(settings: Settings) -> ReceiptSender:
    if settings.smtp_host:
        return SmtpSender(settings)
    return PickupDirSender(settings.outbox_path)


class Receipts:
    def __init__(self, uow: UnitOfWorkFactory, tenant: Tenant, sender: ReceiptSender) -> None:
        self.uow = uow
        self.tenant = tenant
        self.sender = sender
        self._locks: weakref.WeakValueDictionary[uuid.UUID, asyncio.Lock] = (
            weakref.WeakValueDictionary())

    async def deliver(self, event: ItemRouted) -> bool:
        """Send the receipt for `event` if one is due and not yet sent; True if sent now."""
        lock = self._locks.get(event.item_id)
        if lock is None:
            lock = self._locks[event.item_id] = asyncio.Lock()
        async with lock:
            return await self._deliver(event)

    async def _deliver(self, event: ItemRouted) -> bool:
        domain = self.tenant.municipality.domain
        async with self.uow() as uow:
            item = await uow.item(event.item_id, lock=False)
            if not receipt_due(event, item.sender, auto_reply=is_auto_reply(item.entities)):
                return False
            row = await uow.session.get(Receipt, item.id, with_for_update=True)
            if row is not None and row.status == "sent":
                return False
            if row is None:
                row = Receipt(item_id=item.id, message_id=receipt_message_id(item.id, domain),
                              recipient=(item.sender or "").strip(), status="pending", attempts=0)
                uow.session.add(row)
            row.attempts += 1
            content = self._content(item, event, row.recipient)
            await uow.commit()
        await self.sender.send(compose(content), event.item_id)
        async with self.uow() as uow:
            row = await uow.session.get(Receipt, event.item_id, with_for_update=True)
            if row is None or row.status == "sent":  # pragma: no cover - a concurrent twin
                return False
            row.status, row.sent_at = "sent", utcnow()
            await audit.append(uow.session, action="receipt_sent", actor="journal",
                               item_id=event.item_id, unit=event.unit, sender=row.recipient,
                               details={"message_id": row.message_id, "attempts": row.attempts})
            await uow.commit()
        metrics.RECEIPTS_SENT.inc()
        log.info("receipt sent", attempts=row.attempts)
        return True

    def _content(self, item: Item, event: ItemRouted, to: str) -> ReceiptContent:
        m = self.tenant.municipality
        unit = self.tenant.units.get(event.unit or "") if event.outcome == "routed" else None
        return ReceiptContent(item_id=item.id, to=to, subject=item.subject or "",
                              municipality=m.name, domain=m.domain, from_address=m.main_mailbox,
                              unit_name=unit.name if unit else None, in_reply_to=item.message_id)
