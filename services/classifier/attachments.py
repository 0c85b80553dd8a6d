"""Attachments whose name hides what they are (pure).

"Faktura.pdf.htm" shows as "Faktura.pdf" where extensions are hidden, and opens as a web page
that asks for a password: a disguised double extension is a classic phishing sign and no
citizen's scanner or mail program makes one. Such an item must never be answered with a
receipt (it would confirm the address to the sender): the sample rules set it aside, and the
model has a pair feature for it (learnt only where labelled items carry the sign). The
entity's value is the pair of extensions ("pdf.htm"), not the name, which may hold a person's
name or CPR number.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.contracts import Entity

# What opens as something other than a document: web pages, scripts, programs, disk images.
_ACTIVE = frozenset({"htm", "html", "shtml", "xhtml", "svg", "hta", "js", "jse", "vbs", "vbe",
                     "wsf", "ps1", "exe", "scr", "com", "pif", "bat", "cmd", "msi", "jar", "lnk",
                     "iso", "img"})
# What the name pretends to be.
_DOCUMENT = frozenset({"pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "odt", "ods", "rtf",
                       "txt", "csv", "jpg", "jpeg", "png", "gif", "tif", "tiff", "zip", "eml"})


def disguised(filename: str) -> str | None:
    """"pdf.htm" for "Faktura.pdf.htm" (the shown and the real extension), else None."""
    parts = filename.strip().lower().rsplit(".", 2)
    if len(parts) == 3 and parts[2] in _ACTIVE and parts[1].strip() in _DOCUMENT:
        return f"{parts[1].strip()}.{parts[2]}"
    return None


def attachment_signs(filenames: Iterable[str]) -> tuple[Entity, ...]:
    found = (disguised(name) for name in filenames)
    return tuple(Entity(kind="disguised_attachment", value=pair, source="attachment")
                 for pair in found if pair)
