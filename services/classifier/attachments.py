"""Attachments whose name hides what they are (pure).

"Faktura.pdf.htm" shows as "Faktura.pdf" where extensions are hidden, and opens as a web page
that asks for a password: a disguised double extension is a classic phishing sign and no
citizen's scanner or mail program makes one. Such an item must never be answered with a
receipt (it would confirm the address to the sender); the model reads it as a sign of
`ikke-relevant`, and the sample rules set it aside.
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


def disguised(filename: str) -> bool:
    parts = filename.strip().lower().rsplit(".", 2)
    return len(parts) == 3 and parts[2] in _ACTIVE and parts[1].strip() in _DOCUMENT


def attachment_signs(filenames: Iterable[str]) -> tuple[Entity, ...]:
    return tuple(Entity(kind="disguised_attachment", value=name, source="attachment")
                 for name in filenames if disguised(name))
