"""What the classifier reads of an item, whatever channel it came by (pure).

The service builds a `Document` from an ItemExtracted event and its text blobs; the CLI builds
one from a labelled item in the sample-data format (`from_labelled`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Document:
    subject: str = ""
    body: str = ""
    attachments: tuple[str, ...] = ()  # the text an extractor read from each attachment
    attachment_names: tuple[str, ...] = ()  # every attachment's file name, text or not
    sender: str = ""
    sender_name: str = ""  # the display name, or the form's submitter
    mailbox: str = ""
    channel: str = "email"
    auto_submitted: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)
    form_id: str | None = None


@dataclass(frozen=True)
class Label:
    unit: str
    kle: str | None = None
    case_number: str | None = None
    clerk: str | None = None


@dataclass(frozen=True)
class LabelledItem:
    id: str
    document: Document
    label: Label
    group: str = ""  # where it came from (the item file), for cross-validation by file


def _form_text(form: Mapping[str, Any]) -> str:
    fields = form.get("fields") or {}
    return "\n".join(f"{k.replace('_', ' ')}: {v}" for k, v in fields.items()
                     if isinstance(v, str | int | float) and str(v).strip())


def from_labelled(data: Mapping[str, Any], group: str = "") -> LabelledItem:
    """One line of an item file (see the sample data's README) as a labelled document."""
    sender = data.get("from") or {}
    form = data.get("form") or {}
    body = data.get("body") or ""
    if form:
        body = (body + "\n" + _form_text(form)).strip()
    submitter = form.get("submitter") or {}
    address = sender.get("address", "") if isinstance(sender, dict) else ""
    doc = Document(
        subject=data.get("subject") or "",
        body=body,
        attachments=tuple(a.get("text") or "" for a in data.get("attachments") or ()),
        attachment_names=tuple(str(a.get("filename") or "") for a in data.get("attachments") or ()),
        sender=address or submitter.get("email", "") or "",
        sender_name=(sender.get("name", "") if isinstance(sender, dict) else "")
        or submitter.get("name", "") or "",
        mailbox=data.get("mailbox") or "",
        channel=data.get("channel") or "email",
        form_id=form.get("form_id"),
    )
    raw = data.get("label") or {}
    label = Label(unit=raw.get("unit", ""), kle=raw.get("kle"),
                  case_number=raw.get("case_number"), clerk=raw.get("clerk"))
    return LabelledItem(id=str(data.get("id", "")), document=doc, label=label, group=group)
