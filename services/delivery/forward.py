"""Composing the forward of an item to a unit's functional mailbox, or its copy in a unit's
mailbox folder (pure: no I/O).

The original message is attached whole (message/rfc822, RFC 2046 §5.2.1) so the clerk's mail
client opens it as it arrived, with its own attachments. X-Postfordeler-* headers carry what
was decided and why, for people and for mailbox rules. The Message-ID is derived from the
routing event, so a resend after a crash is recognisably the same message, and a re-route
(a new event) is a new one.

An item a rule marked sensitive is not forwarded: the functional mailbox gets only a notice with
the item's reference and where to open it (its body, attachments, subject, sender and the
reasons, which may quote the text, stay in Postfordeler, where only the unit's clerks and
auditors see it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, formataddr

from shared.db.models import utcnow

HEADER_MAX = 900  # a header value stays well under SMTP's 998-octet line limit once folded


def delivery_message_id(event_id: uuid.UUID, domain: str) -> str:
    return f"<delivery-{event_id}@{domain}>"


def folder_message_id(event_id: uuid.UUID, domain: str) -> str:
    return f"<delivery-{event_id}.folder@{domain}>"


@dataclass(frozen=True)
class Forward:
    event_id: uuid.UUID
    item_id: uuid.UUID
    domain: str
    from_name: str
    from_address: str
    to: str
    unit_id: str
    unit_name: str
    subject: str
    sender: str | None
    clerk: str | None
    case_number: str | None
    reasons: tuple[str, ...]
    rerouted: bool
    channel: str
    original: bytes | None
    original_name: str
    sensitive: bool = False
    message_id: str = ""  # default: delivery_message_id

    @property
    def msgid(self) -> str:
        return self.message_id or delivery_message_id(self.event_id, self.domain)


def _clean(value: str) -> str:
    """Header-safe: one line, bounded."""
    return " ".join(value.split())[:HEADER_MAX]


def subject(f: Forward) -> str:
    prefix = "[Postfordeler, omfordelt]" if f.rerouted else "[Postfordeler]"
    return _clean(f"{prefix} {f.subject}" if f.subject else prefix)


def decision_headers(f: Forward) -> list[tuple[str, str]]:
    """What was decided and why, as X-Postfordeler-* headers (for people and mailbox rules)."""
    headers = [("X-Postfordeler-Item", str(f.item_id)), ("X-Postfordeler-Unit", f.unit_id),
               ("X-Postfordeler-Decision", "rerouted" if f.rerouted else "routed")]
    if f.clerk:
        headers.append(("X-Postfordeler-Clerk", _clean(f.clerk)))
    if f.case_number:
        headers.append(("X-Postfordeler-Case", _clean(f.case_number)))
    if f.reasons:
        headers.append(("X-Postfordeler-Reason", _clean("; ".join(f.reasons))))
    return headers


def note(f: Forward) -> str:
    """The body: where the item went and why."""
    lines = [f"Postfordeler har sendt denne henvendelse til {f.unit_name}.", ""]
    if f.clerk:
        lines.append(f"Sagsbehandler: {f.clerk}")
    if f.case_number:
        lines.append(f"Sag: {f.case_number}")
    lines += ["Begrundelse:", *(f"  - {r}" for r in f.reasons or ("(ingen)",)), "",
              f"Reference: {f.item_id}",
              "Den oprindelige henvendelse er vedhæftet." if f.original else
              "Den oprindelige henvendelse kan ses i Postfordeler."]
    return "\n".join(lines) + "\n"


def compose(f: Forward) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = formataddr((f.from_name, f.from_address))
    msg["To"] = f.to
    msg["Subject"] = subject(f)
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = f.msgid
    if f.sender and "@" in f.sender:
        msg["Reply-To"] = _clean(f.sender)  # answering the forward answers the citizen
    # RFC 3834: machine-generated; no vacation replies back into Postfordeler.
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    for name, value in decision_headers(f):
        msg[name] = value
    msg.set_content(note(f))
    if f.original is not None:
        if f.channel == "email":
            original = BytesParser(policy=policy.default).parsebytes(f.original)
            msg.add_attachment(original, filename=f.original_name)  # message/rfc822
        else:
            msg.add_attachment(f.original, maintype="application", subtype="octet-stream",
                               filename=f.original_name)
    return msg
