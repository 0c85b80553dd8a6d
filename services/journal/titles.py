"""Titles of the cases and documents the journal creates (pure).

A new case takes the rule's `case_title`, which the router rendered from its template (only the
placeholders the rule language knows, no format specs, at most 300 characters); otherwise the
item's subject. Whatever the source, the title is made safe here, because it is what every
ESDH user and search sees: anything shaped like a CPR number (`ddmmyy-xxxx`, with or without
the hyphen, masked or not, a space or dots inside) is replaced, control characters and runs of
white space become one space, and it is cut to `MAX_TITLE` characters.
"""

from __future__ import annotations

import re

from shared.contracts import ItemRouted, JournalAction
from shared.personal import CPR_MARK, scrub_cpr

__all__ = ["CPR_MARK", "MAX_TITLE", "case_title", "default_title", "safe_title", "scrub_cpr"]

MAX_TITLE = 200
_SPACE = re.compile(r"[\s\x00-\x1f\x7f]+")


def safe_title(text: str, fallback: str) -> str:
    """`text` without CPR numbers or control characters, on one line, at most MAX_TITLE long;
    `fallback` when nothing is left."""
    clean = _SPACE.sub(" ", scrub_cpr(text)).strip()
    if len(clean) > MAX_TITLE:
        clean = clean[:MAX_TITLE - 1].rstrip() + "…"
    return clean or fallback


def default_title(subject: str | None, channel: str) -> str:
    return safe_title(subject or "", f"Henvendelse ({channel})")


def case_title(event: ItemRouted, subject: str | None, channel: str) -> str:
    """The title of a case created for the item: the rule's, else the item's subject."""
    fallback = default_title(subject, channel)
    if event.journal == JournalAction.NEW_CASE and event.case_title:
        return safe_title(event.case_title, fallback)
    return fallback
