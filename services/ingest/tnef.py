"""TNEF (winmail.dat, application/ms-tnef): Outlook's wrapper around a message body and its
attachments. Unpacked with tnefparse; an RTF-only body is turned into plain text here."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tnefparse import TNEF

from .archives import safe_member_name
from .htmltext import html_to_text
from .limits import Limits, Refused

SIGNATURE = b"\x78\x9f\x3e\x22"


@dataclass(frozen=True)
class Tnef:
    body: str
    attachments: list[tuple[str, bytes]]


def is_tnef(data: bytes) -> bool:
    return data[:4] == SIGNATURE


def unpack(data: bytes, limits: Limits) -> Tnef:
    try:
        tnef = TNEF(data, do_checksum=False)
    except Exception as exc:  # tnefparse raises whatever a short or broken buffer gives
        raise Refused(f"not a readable winmail.dat ({type(exc).__name__})") from None
    if len(tnef.attachments) > limits.archive_members:
        raise Refused(f"winmail.dat has {len(tnef.attachments)} attachments "
                      f"(limit {limits.archive_members})")
    attachments = []
    for n, att in enumerate(tnef.attachments, 1):
        try:
            name = _text(att.long_filename()) or _text(att.name) or f"attachment-{n}.bin"
            name = safe_member_name(name).rsplit("/", 1)[-1] or f"attachment-{n}.bin"
        except Refused:
            name = f"attachment-{n}.bin"
        payload = getattr(att, "data", b"") or b""
        attachments.append((name, payload if isinstance(payload, bytes) else b""))
    return Tnef(body=_body(tnef), attachments=attachments)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("cp1252", errors="replace")
    return str(value or "").strip("\x00 ").strip()


def _body(tnef: TNEF) -> str:
    if tnef.body:
        return _text(tnef.body)
    if tnef.htmlbody:
        return html_to_text(_text(tnef.htmlbody))
    try:
        rtf = tnef.rtfbody
    except Exception:  # a broken compressed RTF stream
        return ""
    return rtf_to_text(rtf.decode("cp1252", errors="replace")) if rtf else ""


_RTF_TOKEN = re.compile(
    r"\\([a-z]+)(-?\d+)? ?|\\'([0-9a-f]{2})|\\([^a-z])|([{}])|[\r\n]+|([^\\{}\r\n]+)",
    re.IGNORECASE)
_RTF_SKIP = frozenset({"fonttbl", "colortbl", "stylesheet", "info", "pict", "object",
                       "header", "footer", "themedata", "datastore", "xmlnstbl", "listtable",
                       "listoverridetable", "rsidtbl", "generator", "latentstyles"})


def rtf_to_text(rtf: str) -> str:
    """Plain text of an RTF document: control words dropped, paragraphs kept."""
    out: list[str] = []
    stack: list[bool] = []
    skip = False
    fallback = 0  # characters after \\uN that stand in for it in old readers
    for m in _RTF_TOKEN.finditer(rtf):
        word, arg, hexbyte, symbol, brace, text = m.groups()
        if brace == "{":
            stack.append(skip)
        elif brace == "}":
            skip = stack.pop() if stack else False
        elif word:
            if word.lower() in _RTF_SKIP:
                skip = True
            elif not skip and word in ("par", "line", "row"):
                out.append("\n")
            elif not skip and word in ("tab", "cell"):
                out.append("\t")
            elif not skip and word == "u" and arg:
                out.append(chr(int(arg) % 65536))
                fallback = 1
                continue
        elif symbol == "*":
            skip = True
        elif hexbyte and fallback:
            pass
        elif hexbyte and not skip:
            out.append(bytes([int(hexbyte, 16)]).decode("cp1252", errors="replace"))
        elif symbol in ("\\", "{", "}") and not skip:
            out.append(symbol)
        elif text and not skip:
            out.append(text[fallback:])
        fallback = 0
    lines = (re.sub(r"[ \t]+", " ", line).strip() for line in "".join(out).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
