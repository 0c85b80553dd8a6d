"""Clerks' corrections as training data (pure).

A re-route through the clerk API (which is also how the main-mailbox team assigns a triage
item) records what the system decided and the unit a person chose. An item whose final unit
was set that way is a labelled item: its extracted text with the person's unit (and clerk) as
label, in the sample data's item format, so the next training run learns from it. Reading the
corrections from the database is the CLI's adapter (`postfordeler/commands/corrections.py`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .document import LabelledItem

GROUP = "corrections"  # the cross-validation group of corrected items


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    text: str  # what the extractor read ("" for image-only files)


@dataclass(frozen=True)
class CorrectedItem:
    """An item as the classifier saw it, with the unit a clerk gave it last."""

    item_id: str
    channel: str
    mailbox: str
    received_at: datetime
    sender_name: str
    sender_address: str
    recipients: tuple[str, ...]
    subject: str
    body: str
    attachments: tuple[Attachment, ...]
    unit: str
    clerk: str | None
    case_number: str | None
    from_unit: str | None
    reason: str  # the clerk's reason, CPR numbers already redacted by the API
    corrected_at: datetime
    cpr_present: bool = False


def record(item: CorrectedItem) -> dict[str, Any]:
    """One line of an item file (the sample data's format) with the clerk's label."""
    sender = ({"name": item.sender_name, "address": item.sender_address}
              if item.sender_name or item.sender_address else None)
    return {
        "id": item.item_id, "channel": item.channel, "mailbox": item.mailbox,
        "received_at": item.received_at.isoformat(), "from": sender,
        "to": list(item.recipients), "cc": [],
        "subject": item.subject if item.channel == "email" else None,
        "body": item.body,
        "attachments": [{"filename": a.filename, "content_type": a.content_type,
                         "text": a.text} for a in item.attachments],
        "form": None,
        "label": {"unit": item.unit, "kle": None, "case_number": item.case_number,
                  "clerk": item.clerk, "licence_plates": [], "cpr_present": item.cpr_present,
                  "language": None,
                  "notes": f"corrected {item.corrected_at.date().isoformat()} from "
                           f"{item.from_unit or 'none'}: {item.reason}"},
    }


def merge(items: Iterable[LabelledItem], corrected: Iterable[LabelledItem]
          ) -> list[LabelledItem]:
    """The training set: a corrected label overrides an earlier one for the same item (and a
    later correction an earlier one); items keep their order, new ones come last."""
    latest = {c.id: c for c in corrected}
    result = [latest.get(i.id, i) for i in items]
    known = {i.id for i in result}
    return result + [c for key, c in latest.items() if key not in known]


def summary(items: Sequence[LabelledItem]) -> dict[str, int]:
    """How many corrected items each unit got (for the CLI's report)."""
    counts: dict[str, int] = {}
    for i in items:
        counts[i.label.unit] = counts.get(i.label.unit, 0) + 1
    return dict(sorted(counts.items()))
