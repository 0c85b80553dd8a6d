"""From raw bytes to the parts of an item (runs in a worker process, see workers.py).

A mail is parsed (mime.py) and each attachment is looked at by its content, not its name:
a forwarded mail is parsed in turn and its attachments become its children; winmail.dat and
ZIP archives are unpacked into children; PDFs give their text layer; Word documents their
text; images, and PDF pages without a text layer, are listed for OCR, which the caller runs
page by page in the pool. The tree is kept flat with parent indexes. A part that breaks a
limit or cannot be read keeps its bytes and gets a `problem`; it never fails the others.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass, field

from shared.contracts import Address
from shared.errors import InvalidInput

from . import archives, docx, mime, ocr, pdf, tnef
from .limits import Limits, Refused

_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"GIF87a",
                b"GIF89a")
_TYPES = {"pdf": "application/pdf", "message": "message/rfc822",
          "tnef": "application/ms-tnef", "zip": "application/zip",
          "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}


@dataclass
class Page:
    number: int  # 1-based
    source: str  # "text_layer" or "ocr"
    text: str
    confidence: float | None = None
    orientation: int = 0
    problem: str | None = None


@dataclass
class Part:
    filename: str
    content_type: str
    data: bytes
    text: str | None = None
    parent: int | None = None
    problem: str | None = None
    kind: str = ""  # what the content is: pdf, image, message, tnef, zip, docx, text
    pages: list[Page] = field(default_factory=list)
    ocr: list[int] = field(default_factory=list)  # 0-based pages still to OCR


@dataclass
class Extraction:
    subject: str = ""
    sender: Address = field(default_factory=Address)
    recipients: tuple[str, ...] = ()
    auto_submitted: bool = False
    text: str = ""
    parts: list[Part] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)


def sniff(data: bytes, content_type: str = "", filename: str = "") -> str:
    """What a part is, from its first bytes where they tell, else its declared type."""
    head = data[:1024]
    if head.startswith(b"%PDF"):
        return "pdf"
    if tnef.is_tnef(data):
        return "tnef"
    if head.startswith(_IMAGE_MAGIC):
        return "image"
    if archives.is_zip(data):
        return "docx" if docx.is_docx(data) else "zip"
    if b"%PDF-" in head:  # junk before the header, which readers accept
        return "pdf"
    name = filename.lower()
    if content_type == "message/rfc822" or name.endswith(".eml"):
        return "message"
    if content_type == "application/ms-tnef" or name == "winmail.dat":
        return "tnef"
    if content_type.startswith("image/"):
        return "image"
    if content_type.startswith("text/"):
        return "text"
    return ""


def expand_mail(raw: bytes, limits: Limits) -> Extraction:
    limits.check_size(len(raw), "message")
    parsed = mime.parse_message(raw)
    out = Extraction(subject=parsed.subject, sender=parsed.sender,
                     recipients=parsed.recipients, auto_submitted=parsed.auto_submitted,
                     text=parsed.text, defects=list(parsed.defects))
    expander = _Expander(limits, out.parts)
    for att in parsed.attachments:
        expander.add(att.filename, att.content_type, att.data, att.text, None, 1, 0)
    return out


def expand_files(files: list[tuple[str, str, bytes]], limits: Limits) -> Extraction:
    """Files that came without a mail (a form's attachments: name, type, bytes), read the way
    a mail's attachments are: a file that breaks a limit keeps a `problem`, the rest go on."""
    out = Extraction()
    expander = _Expander(limits, out.parts)
    for filename, content_type, data in files:
        expander.add(filename, content_type, data, None, None, 1, 0)
    return out


def expand_document(data: bytes, filename: str, limits: Limits) -> Extraction:
    """A file on its own (a scan, or `postfordeler extract`): it is part 0."""
    limits.check_size(len(data))
    out = Extraction(subject=filename)
    kind = sniff(data, mimetypes.guess_type(filename)[0] or "", filename)
    if kind == "":
        raise Refused("unsupported file type (not a PDF, image, mail, Word document or ZIP)")
    _Expander(limits, out.parts).add(filename, _content_type(kind, filename, data), data,
                                     None, None, 1, 0)
    if kind in ("pdf", "image") and out.parts[0].problem:
        raise Refused(out.parts[0].problem)
    return out


def _content_type(kind: str, filename: str, data: bytes) -> str:
    if kind == "image":
        for magic, ctype in ((b"\x89PNG", "image/png"), (b"\xff\xd8", "image/jpeg"),
                             (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff"),
                             (b"GIF8", "image/gif")):
            if data.startswith(magic):
                return ctype
    return _TYPES.get(kind) or mimetypes.guess_type(filename)[0] or "application/octet-stream"


class _Expander:
    def __init__(self, limits: Limits, parts: list[Part]) -> None:
        self.limits = limits
        self.parts = parts
        self.budget = archives.Budget(limits.archive_bytes)

    def add(self, filename: str, content_type: str, data: bytes, text: str | None,
            parent: int | None, depth: int, zips: int) -> None:
        if len(self.parts) >= self.limits.max_parts:
            if parent is not None:
                self.parts[parent].problem = (f"more than {self.limits.max_parts} parts: "
                                              "the rest skipped")
            return
        index = len(self.parts)
        part = Part(filename, content_type, data, text, parent)
        self.parts.append(part)
        try:
            self.limits.check_size(len(data), "attachment")
            part.kind = sniff(data, content_type, filename)
            self._read(part, index, depth, zips)
        except InvalidInput as exc:  # Refused, unparseable forwarded mail
            part.problem = str(exc)[:500]
        except RecursionError:
            part.problem = "nested too deeply"
        except Exception as exc:  # a library's own error on a broken file
            part.problem = f"unreadable {part.kind or 'file'} ({type(exc).__name__})"

    def _read(self, part: Part, index: int, depth: int, zips: int) -> None:
        kind, data, limits = part.kind, part.data, self.limits
        if kind in ("message", "tnef", "zip") and depth > limits.nesting:
            raise Refused(f"nested more than {limits.nesting} levels deep")
        if kind == "message":
            nested = mime.parse_message(data)
            part.text = _forwarded_text(nested)
            for att in nested.attachments:
                self.add(att.filename, att.content_type, att.data, att.text, index, depth + 1,
                         zips)
        elif kind == "tnef":
            unpacked = tnef.unpack(data, limits)
            part.text = unpacked.body
            for name, payload in unpacked.attachments:
                self.add(name, mimetypes.guess_type(name)[0] or "application/octet-stream",
                         payload, None, index, depth + 1, zips)
        elif kind == "zip":
            if zips >= limits.archive_depth:
                raise Refused(f"archives nested more than {limits.archive_depth} deep")
            for member in archives.unzip(data, limits, self.budget):
                name = member.name.rsplit("/", 1)[-1]
                self.add(name, mimetypes.guess_type(name)[0] or "application/octet-stream",
                         member.data, None, index, depth + 1, zips + 1)
        elif kind == "docx":
            part.text = docx.docx_text(data, limits, self.budget)
        elif kind == "pdf":
            for n, text in enumerate(pdf.page_texts(data, limits)):
                if len("".join(text.split())) >= limits.min_text_chars:
                    part.pages.append(Page(n + 1, "text_layer", text.strip()))
                else:
                    part.ocr.append(n)
            part.text = join_pages(part.pages)
        elif kind == "image":
            part.ocr = list(range(ocr.frame_count(data, limits)))
        elif kind == "text" and part.text is None:
            part.text = mime.decode_text(data, None)[0]


def join_pages(pages: list[Page]) -> str:
    return "\n\n".join(p.text for p in sorted(pages, key=lambda p: p.number) if p.text)


def _forwarded_text(msg: mime.ParsedMessage) -> str:
    head = [f"Fra: {_address(msg.sender)}" if msg.sender.address else "",
            f"Til: {', '.join(msg.recipients)}" if msg.recipients else "",
            f"Emne: {msg.subject}" if msg.subject else ""]
    return "\n".join(line for line in head if line) + "\n\n" + msg.text


def _address(a: Address) -> str:
    return f"{a.name} <{a.address}>" if a.name else a.address
