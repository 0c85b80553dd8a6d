"""A form submission as JSON -> the item's text: one "label: value" line per field.

Accepts `{"form_id": ..., "title": ..., "fields": {...}, "sender": {...}}` or a plain object of
fields; nested values are flattened with dotted names. Pure: no I/O.
"""

from __future__ import annotations

import json
from typing import Any

from shared.contracts import Address
from shared.errors import InvalidInput

from .expand import Extraction
from .limits import Limits

_EMAIL_KEYS = ("email", "e-mail", "e_mail", "mail", "epost", "e-post")


def form_extraction(data: bytes, limits: Limits) -> Extraction:
    limits.check_size(len(data), "form submission")
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidInput(f"not a JSON form submission ({type(exc).__name__})") from None
    if not isinstance(doc, dict):
        raise InvalidInput("not a JSON form submission (expected an object)")
    fields = doc.get("fields") if isinstance(doc.get("fields"), dict) else doc
    lines = [f"{key}: {value}" for key, value in _flatten(fields, "")]
    sender: dict[str, Any] = doc["sender"] if isinstance(doc.get("sender"), dict) else {}
    address = str(sender.get("email") or next(
        (str(v) for k, v in _flatten(fields, "") if k.lower().rsplit(".", 1)[-1] in _EMAIL_KEYS),
        ""))
    title = str(doc.get("title") or doc.get("form_id") or "")
    return Extraction(subject=title, sender=Address(name=str(sender.get("name") or ""),
                                                    address=address), text="\n".join(lines))


def _flatten(value: Any, prefix: str, depth: int = 0) -> list[tuple[str, str]]:
    if depth > 20:
        return [(prefix, "…")]
    if isinstance(value, dict):
        return [pair for k, v in value.items()
                for pair in _flatten(v, f"{prefix}.{k}" if prefix else str(k), depth + 1)]
    if isinstance(value, list):
        return [pair for n, v in enumerate(value, 1)
                for pair in _flatten(v, f"{prefix}[{n}]", depth + 1)]
    return [(prefix, "" if value is None else str(value))]
