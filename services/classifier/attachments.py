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

from collections.abc import Iterable, Sequence

from shared.contracts import AttachmentRef, Entity

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


def own_files(attachments: Sequence[AttachmentRef]) -> tuple[str, ...]:
    """The names of the files the sender sent, including those in a ZIP or winmail.dat, but
    not the parts of a forwarded mail: those are what the writer asks about ("is this from
    you?"), not what they sent."""

    def forwarded(a: AttachmentRef) -> bool:
        seen: set[int] = set()
        while a.parent is not None and a.parent not in seen and 0 <= a.parent < len(attachments):
            seen.add(a.parent)
            a = attachments[a.parent]
            if a.content_type == "message/rfc822":
                return True
        return False

    return tuple(a.filename for a in attachments if not forwarded(a))
