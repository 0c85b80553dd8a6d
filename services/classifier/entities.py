"""Rule-based entity extraction (pure; no I/O). The deeper Danish pipeline replaces this later.

Every entity carries its position and a normalised value. CPR numbers are reported masked
(`DDMMYY-XXXX`) so the full number never travels on the bus or into logs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date

from shared.contracts import Entity
from shared.text import keywords

_PLATE = re.compile(r"(?<![\w-])([A-Za-zÆØÅæøå]{2})[ -]?(\d{2})[ -]?(\d{3})(?![\w-])")
_CASE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("sbsys", re.compile(r"\b\d{2}\.\d{2}\.\d{2}-[A-ZÆØÅ]\d{2}-\d{1,6}-\d{2}\b")),
    ("getorganized", re.compile(r"\b[A-ZÆØÅ]{2,5}-\d{4}-\d{6}\b")),
    ("nova", re.compile(r"\bS\d{4}-\d{4,6}\b")),
)
_CPR = re.compile(r"(?<![\d-])(\d{2})(\d{2})(\d{2})-?(\d{4})(?![\d-])")
_EMAIL_DOMAIN = re.compile(r"@([A-Za-z0-9.-]+\.[A-Za-z]{2,})$")


def licence_plates(text: str, source: str = "body") -> Iterator[Entity]:
    for m in _PLATE.finditer(text):
        letters, a, b = m.groups()
        yield Entity(kind="licence_plate", value=f"{letters.upper()}{a}{b}", start=m.start(),
                     end=m.end(), source=source)


def case_numbers(text: str, source: str = "body") -> Iterator[Entity]:
    for system, pattern in _CASE_PATTERNS:
        for m in pattern.finditer(text):
            yield Entity(kind="case_number", value=m.group(), start=m.start(), end=m.end(),
                         source=f"{source}:{system}")


def cpr_numbers(text: str, source: str = "body") -> Iterator[Entity]:
    for m in _CPR.finditer(text):
        dd, mm, yy, _serial = m.groups()
        if not _valid_date(int(dd), int(mm), int(yy)):
            continue
        yield Entity(kind="cpr", value=f"{dd}{mm}{yy}-XXXX", start=m.start(), end=m.end(),
                     source=source)


def _valid_date(day: int, month: int, year: int) -> bool:
    # The century comes from the serial's first digit; any century with a valid date will do
    # for detection (29 February must be checked against a leap year, 2000 is one).
    try:
        date(2000 + year, month, day)
    except ValueError:
        try:
            date(1900 + year, month, day)
        except ValueError:
            return False
    return True


def extract(subject: str, body: str, *, sender: str = "", auto_submitted: bool = False,
            max_keywords: int = 300) -> tuple[Entity, ...]:
    """All entities of an item, de-duplicated on (kind, value), in a stable order."""
    found: list[Entity] = []
    for source, text in (("subject", subject), ("body", body)):
        found += licence_plates(text, source)
        found += case_numbers(text, source)
        found += cpr_numbers(text, source)
    if m := _EMAIL_DOMAIN.search(sender.strip()):
        found.append(Entity(kind="sender_domain", value=m.group(1).lower(), source="sender"))
    if auto_submitted:
        found.append(Entity(kind="auto_reply", value="true", source="headers"))
    words = sorted(keywords(subject) | keywords(body))[:max_keywords]
    found += (Entity(kind="keyword", value=w, source="text") for w in words)
    seen: set[tuple[str, str]] = set()
    unique = []
    for e in found:
        if (e.kind, e.value) not in seen:
            seen.add((e.kind, e.value))
            unique.append(e)
    return tuple(unique)
