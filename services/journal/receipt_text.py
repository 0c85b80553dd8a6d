"""What a receipt ("kvittering") says and who gets one. Pure: no I/O beyond reading templates.

Templates are Jinja2, plain text and HTML, chosen most specific first:
`form/<form id>.{txt,html}.j2`, `unit/<unit id>.{txt,html}.j2`, `receipt.{txt,html}.j2`, looked
up in the tenant's `receipts/` directory before the built-in Danish ones. A tenant template can
`{% extends "receipt.txt.j2" %}` and override a block (greeting, routing, next).
A rule's `receipt_template: <name>` takes `named/<name>.txt.j2` (and `named/<name>.html.j2` if
there is one; otherwise the receipt is plain text only) before all of these
(shared/receipt_templates.py).

What happens next and the expected answer time come from the tenant's `receipts.yaml`:

    default: {next_steps: "...", answer_time: "inden for 10 arbejdsdage"}
    units:   {parkering: {answer_time: "inden for 20 arbejdsdage"}}
    forms:   {bestil-storskrald: {next_steps: "...", answer_time: "..."}}

(form overrides unit overrides default, field by field).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any

import yaml
from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    select_autoescape,
)

from shared.contracts import ItemRouted, RouteOutcome
from shared.db.models import utcnow
from shared.errors import ConfigurationError
from shared.receipt_templates import NAMED_DIR, named_receipt_templates

BUILTIN = Path(__file__).resolve().parent / "templates"

_NO_REPLY = re.compile(
    r"^(no-?reply|do-?not-?reply|mailer-daemon|postmaster|bounces?|auto-?reply)([+._-].*)?@",
    re.IGNORECASE)


def receipt_message_id(item_id: uuid.UUID, domain: str) -> str:
    return f"<receipt-{item_id}@{domain}>"


def reference(item_id: uuid.UUID) -> str:
    """Short reference for people; the full item id is in the X-Postfordeler-Item header."""
    return f"PF-{item_id.hex[:10].upper()}"


def is_auto_reply(entities: list[dict[str, Any]] | None) -> bool:
    # Ingest marks auto-replies, bounces and list mail (Auto-Submitted, Precedence, List-Id)
    # and the classifier turns that into this entity.
    return any(e.get("kind") == "auto_reply" for e in entities or [])


def form_id_of(channel: str | None, mailbox: str | None,
               entities: list[dict[str, Any]] | None) -> str | None:
    """The form a submission came through: a `form` entity, else a form channel's mailbox."""
    for e in entities or []:
        if e.get("kind") == "form" and e.get("value"):
            return str(e["value"])
    if channel == "form" and mailbox:
        return mailbox.removeprefix("form:")
    return None


def receipt_due(event: ItemRouted, sender: str | None, *, auto_reply: bool = False) -> bool:
    """A receipt goes to a human sender of an item we keep (never to robots or bounces), and
    only when the rule said so."""
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
    unit_id: str | None = None
    form_id: str | None = None
    next_steps: str | None = None
    answer_time: str | None = None
    template: str | None = None  # a named template (the rule's `receipt_template`)


@dataclass(frozen=True)
class ReceiptTexts:
    """The tenant's receipts.yaml: what happens next and when to expect an answer."""

    default: dict[str, str] = field(default_factory=dict)
    units: dict[str, dict[str, str]] = field(default_factory=dict)
    forms: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, tenant_dir: Path | None) -> ReceiptTexts:
        path = tenant_dir / "receipts.yaml" if tenant_dir else None
        if path is None or not path.exists():
            return cls()
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"{path}: invalid YAML: {exc}") from exc
        return cls(default=dict(data.get("default") or {}), units=dict(data.get("units") or {}),
                   forms=dict(data.get("forms") or {}))

    def lookup(self, key: str, unit: str | None, form: str | None) -> str | None:
        for scope in (self.forms.get(form or "", {}), self.units.get(unit or "", {}),
                      self.default):
            if scope.get(key):
                return str(scope[key])
        return None


class ReceiptTemplates:
    def __init__(self, tenant_dir: Path | None = None) -> None:
        self.tenant_dir = tenant_dir
        paths = [str(tenant_dir / "receipts")] if tenant_dir else []
        loader = FileSystemLoader([*paths, str(BUILTIN)])
        # Plain text must not be HTML-escaped; HTML must be.
        self.text = Environment(loader=loader, undefined=StrictUndefined,
                                autoescape=False, keep_trailing_newline=True)  # noqa: S701
        self.html = Environment(loader=loader, undefined=StrictUndefined,
                                autoescape=select_autoescape(default=True, default_for_string=True))
        self.texts = ReceiptTexts.load(tenant_dir)

    def _names(self, c: ReceiptContent, ext: str) -> list[str]:
        names = [f"form/{c.form_id}.{ext}.j2"] if c.form_id else []
        names += [f"unit/{c.unit_id}.{ext}.j2"] if c.unit_id else []
        return [*names, f"receipt.{ext}.j2"]

    def named(self) -> frozenset[str]:
        """The named templates there are now (a tenant may add some while running)."""
        return named_receipt_templates(self.tenant_dir)

    def render(self, c: ReceiptContent) -> tuple[str, str | None]:
        """The text and HTML parts; no HTML for a named template without an HTML file."""
        values = {"municipality": c.municipality, "subject": c.subject or "(intet emne)",
                  "reference": reference(c.item_id), "unit": c.unit_name,
                  "received": utcnow().strftime("%d.%m.%Y"),
                  "next_steps": c.next_steps or self.texts.lookup("next_steps", c.unit_id,
                                                                  c.form_id),
                  "answer_time": c.answer_time or self.texts.lookup("answer_time", c.unit_id,
                                                                    c.form_id)}
        if c.template is not None:
            if c.template not in self.named():
                raise ConfigurationError(f"no receipt template named {c.template!r}")
            text = self.text.get_template(f"{NAMED_DIR}/{c.template}.txt.j2").render(values)
            try:
                named_html = self.html.get_template(f"{NAMED_DIR}/{c.template}.html.j2")
            except TemplateNotFound:
                return text, None
            return text, named_html.render(values)
        text = self.text.select_template(self._names(c, "txt")).render(values)
        html = self.html.select_template(self._names(c, "html")).render(values)
        return text, html


_BUILTIN_TEMPLATES: ReceiptTemplates | None = None


def compose(c: ReceiptContent, templates: ReceiptTemplates | None = None) -> EmailMessage:
    global _BUILTIN_TEMPLATES
    if templates is None:
        _BUILTIN_TEMPLATES = templates = _BUILTIN_TEMPLATES or ReceiptTemplates()
    text, html = templates.render(c)
    msg = EmailMessage()
    msg["From"] = formataddr((c.municipality, c.from_address))
    msg["To"] = c.to
    msg["Subject"] = f"Kvittering for modtagelse: {c.subject}" if c.subject else \
        "Kvittering for modtagelse"
    msg["Date"] = format_datetime(utcnow())
    # Deterministic: a resend after a crash carries the same id, so clients show it once.
    msg["Message-ID"] = receipt_message_id(c.item_id, c.domain)
    if c.in_reply_to:
        ref = c.in_reply_to if c.in_reply_to.startswith("<") else f"<{c.in_reply_to}>"
        msg["In-Reply-To"] = ref
        msg["References"] = ref
    # RFC 3834: a robot's answer; mail servers and clients must not auto-reply to it.
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"
    msg["X-Postfordeler-Item"] = str(c.item_id)
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg
