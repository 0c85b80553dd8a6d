"""DOCX (and other WordprocessingML) text: the ZIP is unpacked within the archive limits, then
word/document.xml is read with expat. Word never writes a DTD, so a document with one is
refused before parsing: no entity expansion (billion laughs), no external entities."""

from __future__ import annotations

import zipfile
from io import BytesIO
from xml.etree import ElementTree

from .archives import Budget, unzip
from .limits import Limits, Refused

W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
DOCX_TYPES = frozenset({
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.ms-word.document.macroenabled.12",
})


def is_docx(data: bytes) -> bool:
    try:
        names = zipfile.ZipFile(BytesIO(data)).namelist()
    except Exception:
        return False
    return "word/document.xml" in names


def docx_text(data: bytes, limits: Limits, budget: Budget) -> str:
    parts = {m.name: m.data for m in unzip(data, limits, budget)}
    xml = parts.get("word/document.xml")
    if xml is None:
        raise Refused("not a Word document (no word/document.xml)")
    if b"<!DOCTYPE" in xml or b"<!ENTITY" in xml:
        raise Refused("Word document with a DTD refused (entity expansion)")
    out: list[str] = []
    try:  # no DTD, so none of the XML attacks S314 warns about can happen
        for event, elem in ElementTree.iterparse(  # noqa: S314
                BytesIO(xml), events=("start", "end")):
            tag = elem.tag
            if event == "start":
                if tag in (W + "tab",):
                    out.append("\t")
                elif tag in (W + "br", W + "cr"):
                    out.append("\n")
                continue
            if tag == W + "t" and elem.text:
                out.append(elem.text)
            elif tag == W + "p":
                out.append("\n")
            elif tag == W + "tc":
                out.append("\t")
    except ElementTree.ParseError as exc:
        raise Refused(f"Word document XML unreadable ({exc})") from None
    lines = (line.rstrip() for line in "".join(out).split("\n"))
    return "\n".join(lines).strip()
