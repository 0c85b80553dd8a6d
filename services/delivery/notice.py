"""The forward of an item a rule marked sensitive (pure: no I/O): only that it arrived, for
which unit, and where to open it. Its body, attachments, subject, sender and the routing
reasons (which may quote the text) stay in Postfordeler, where only the unit's clerks and
auditors see the item; a functional mailbox is read, kept and synchronised more widely."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import format_datetime, formataddr

from shared.db.models import utcnow

from .forward import Forward


def compose_notice(f: Forward) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = formataddr((f.from_name, f.from_address))
    msg["To"] = f.to
    ref = f"PF-{f.item_id.hex[:10].upper()}"  # the reference the sender's receipt names
    msg["Subject"] = f"[Postfordeler] Fortrolig henvendelse {ref}"
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = f.msgid
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg["X-Postfordeler-Item"] = str(f.item_id)
    msg["X-Postfordeler-Unit"] = f.unit_id
    msg["X-Postfordeler-Decision"] = "rerouted" if f.rerouted else "routed"
    msg["X-Postfordeler-Sensitive"] = "yes"
    msg.set_content("\n".join([
        f"Postfordeler har modtaget en fortrolig henvendelse til {f.unit_name}.",
        "Af hensyn til fortroligheden sendes indholdet ikke med mail.", "",
        f"Reference: {ref} ({f.item_id})",
        f"Åbn den i Postfordeler: /ui/items/{f.item_id}"]) + "\n")
    return msg
