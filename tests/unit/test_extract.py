"""Extraction of attachments (services/ingest/expand.py and its format modules), run in this
process: structure of forwarded mail, winmail.dat, ZIP limits (bombs, traversal, depth), DOCX,
PDF text layers. Hostile inputs are generated here, not stored."""

from __future__ import annotations

import io
import struct
import zipfile
from email.message import EmailMessage

import pytest
from tnefparse import TNEF

from services.ingest.archives import Budget, safe_member_name, unzip
from services.ingest.expand import expand_document, expand_mail, sniff
from services.ingest.limits import Limits, Refused
from services.ingest.tnef import rtf_to_text

LIMITS = Limits()


# ---- generators -------------------------------------------------------------------------

def text_pdf(*pages: list[str]) -> bytes:
    """A PDF with a real text layer (Helvetica, WinAnsi: æøå work), one page per list."""
    objects: list[bytes] = []
    page_ids = [3 + 2 * n for n in range(len(pages))]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{i} 0 R" for i in page_ids).encode()
    objects.append(b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % len(pages))
    font_id = 3 + 2 * len(pages)
    for n, lines in enumerate(pages):
        body = "BT /F1 12 Tf 72 760 Td 16 TL " + " ".join(
            "(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") '"
            for line in lines) + " ET"
        stream = body.encode("cp1252")
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources "
                       b"<< /Font << /F1 %d 0 R >> >> /Contents %d 0 R >>"
                       % (font_id, page_ids[n] + 1))
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica "
                   b"/Encoding /WinAnsiEncoding >>")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, obj in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % i + obj + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
              % (len(objects) + 1, xref))
    return out.getvalue()


def zip_of(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def docx_of(paragraphs: list[str], extra: bytes = b"") -> bytes:
    w = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    body = "".join(f"<w:p><w:r><w:t>{p}</w:t></w:r></w:p>" for p in paragraphs)
    xml = extra + (f'<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="{w}">'
                   f"<w:body>{body}</w:body></w:document>").encode()
    return zip_of({"[Content_Types].xml": b"<Types/>", "word/document.xml": xml})


def _tnef_obj(level: int, name: int, data: bytes, kind: int = 0x0001) -> bytes:
    return (struct.pack("<BHHI", level, name, kind, len(data)) + data
            + struct.pack("<H", sum(data) & 0xFFFF))


def tnef_of(body: str, attachments: dict[str, bytes]) -> bytes:
    out = struct.pack("<IH", 0x223E9F78, 1)
    out += _tnef_obj(1, TNEF.ATTBODY, body.encode("cp1252"))
    for name, data in attachments.items():
        out += _tnef_obj(2, TNEF.ATTATTACHRENDDATA, b"\x01\x00" + b"\x00" * 12, 0x0006)
        out += _tnef_obj(2, TNEF.ATTATTACHTITLE, name.encode("cp1252") + b"\x00")
        out += _tnef_obj(2, TNEF.ATTATTACHDATA, data, 0x0006)
    return out


def mail_with(*attachments: tuple[bytes, str, str, str], body: str = "Hej") -> bytes:
    msg = EmailMessage()
    msg["From"] = "Borger <borger@example.dk>"
    msg["To"] = "post@eksempelby.dk"
    msg["Subject"] = "Bilag"
    msg.set_content(body)
    for data, maintype, subtype, filename in attachments:
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


# ---- tests ------------------------------------------------------------------------------

def test_forwarded_mail_is_kept_as_structure() -> None:
    inner = EmailMessage()
    inner["From"] = "Jens Jensen <jens@example.dk>"
    inner["To"] = "anden@example.dk"
    inner["Subject"] = "Klage over parkering"
    inner.set_content("Nummerpladen var AB 12 345.")
    inner.add_attachment(text_pdf(["Sag 2023-004512 om parkering i Århus"]),
                         maintype="application", subtype="pdf", filename="afgørelse.pdf")
    outer = EmailMessage()
    outer["From"] = "Medarbejder <m@eksempelby.dk>"
    outer["To"] = "post@eksempelby.dk"
    outer["Subject"] = "VS: Klage over parkering"
    outer.set_content("Se vedhæftede")
    outer.add_attachment(inner)
    out = expand_mail(outer.as_bytes(), LIMITS)
    assert [(p.kind, p.parent) for p in out.parts] == [("message", None), ("pdf", 0)]
    forwarded, pdf = out.parts
    assert "Fra: Jens Jensen <jens@example.dk>" in (forwarded.text or "")
    assert "Emne: Klage over parkering" in (forwarded.text or "")
    assert "AB 12 345" in (forwarded.text or "")
    assert pdf.filename == "afgørelse.pdf"
    assert "Sag 2023-004512 om parkering i Århus" in (pdf.text or "")
    assert [(p.number, p.source) for p in pdf.pages] == [(1, "text_layer")]


def test_winmail_dat_is_unpacked() -> None:
    data = tnef_of("Hej kommune, se bilag", {"bilag.txt": "Kære Søren".encode("cp1252"),
                                             "scan.pdf": text_pdf(["Journalnummer 27.03.00"])})
    out = expand_mail(mail_with((data, "application", "ms-tnef", "winmail.dat")), LIMITS)
    kinds = [(p.filename, p.kind, p.parent) for p in out.parts]
    assert kinds == [("winmail.dat", "tnef", None), ("bilag.txt", "text", 0),
                     ("scan.pdf", "pdf", 0)]
    assert out.parts[0].text == "Hej kommune, se bilag"
    assert "Journalnummer 27.03.00" in (out.parts[2].text or "")


def test_rtf_body_to_text() -> None:
    rtf = r"{\rtf1\ansi{\fonttbl{\f0 Arial;}}{\*\generator x;}Hej Bj\'f8rn\par K\u248?benhavn}"
    assert rtf_to_text(rtf) == "Hej Bjørn\nKøbenhavn"


def test_zip_members_become_children() -> None:
    data = zip_of({"a/brev.txt": "Ansøgning om byggetilladelse".encode(),
                   "b/notat.docx": docx_of(["Første afsnit", "Andet afsnit"])})
    out = expand_mail(mail_with((data, "application", "zip", "bilag.zip")), LIMITS)
    assert [(p.filename, p.kind, p.parent) for p in out.parts] == [
        ("bilag.zip", "zip", None), ("brev.txt", "text", 0), ("notat.docx", "docx", 0)]
    assert out.parts[2].text == "Første afsnit\nAndet afsnit"
    assert out.parts[0].problem is None


def test_zip_bomb_by_ratio_is_refused() -> None:
    bomb = zip_of({"zeros.txt": b"\0" * (20 * 2**20)})
    assert len(bomb) < 100_000
    with pytest.raises(Refused, match="zip bomb"):
        unzip(bomb, LIMITS, Budget(LIMITS.archive_bytes))
    out = expand_mail(mail_with((bomb, "application", "zip", "bomb.zip")), LIMITS)
    assert out.parts[0].problem and "zip bomb" in out.parts[0].problem
    assert len(out.parts) == 1  # nothing of it unpacked


def test_zip_limits_count_total_and_depth() -> None:
    small = Limits(archive_members=10, archive_bytes=50_000, archive_depth=2)
    many = zip_of({f"f{i}.txt": b"x" for i in range(11)})
    with pytest.raises(Refused, match="11 files"):
        unzip(many, small, Budget(small.archive_bytes))
    # total: each member is fine, together they pass the budget (stored, so no ratio)
    big = zip_of({f"f{i}.bin": bytes(range(256)) * 80 for i in range(5)}, zipfile.ZIP_STORED)
    with pytest.raises(Refused, match="more than the limit"):
        unzip(big, small, Budget(small.archive_bytes))
    nested = b"innermost"
    for level in range(4):
        nested = zip_of({f"level{level}.zip" if level else "x.txt": nested})
    out = expand_mail(mail_with((nested, "application", "zip", "nested.zip")), small)
    assert any(p.problem and "nested more than 2" in p.problem for p in out.parts)


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "a/../../x.txt",
                                  "C:\\Windows\\evil.exe", "..\\evil.txt"])
def test_path_traversal_is_refused(name: str) -> None:
    with pytest.raises(Refused, match="path traversal"):
        safe_member_name(name)
    out = expand_mail(mail_with((zip_of({name: b"evil"}), "application", "zip", "z.zip")),
                      LIMITS)
    assert "path traversal" in (out.parts[0].problem or "")


def test_zip_member_lying_about_its_size() -> None:
    data = bytearray(zip_of({"a.txt": b"A" * 5000}, zipfile.ZIP_STORED))
    # Patch the central directory's declared size down: reading must not trust it.
    cd = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, cd + 24, 10)
    with pytest.raises(Refused):
        unzip(bytes(data), LIMITS, Budget(LIMITS.archive_bytes))


def test_docx_with_entities_is_refused() -> None:
    laughs = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
              b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>')
    data = zip_of({"word/document.xml": laughs + b"<w:document>&lol2;</w:document>"})
    out = expand_mail(mail_with((data, "application", "octet-stream", "lol.docx")), LIMITS)
    assert "DTD" in (out.parts[0].problem or "")


def test_pdf_text_layer_per_page_and_ocr_list() -> None:
    data = text_pdf(["Side et: Ærø Kommune, æøå ÆØÅ"], [], ["Side tre: sag 2024-000123"])
    out = expand_document(data, "brev.pdf", LIMITS)
    doc = out.parts[0]
    assert doc.kind == "pdf"
    assert [p.number for p in doc.pages] == [1, 3]
    assert doc.ocr == [1]  # the empty page needs OCR
    assert "Ærø Kommune, æøå ÆØÅ" in (doc.text or "")


def test_pdf_page_limit_and_broken_pdf() -> None:
    with pytest.raises(Refused, match="3 pages"):
        expand_document(text_pdf(["a"], ["b"], ["c"]), "x.pdf", Limits(max_pages=2))
    with pytest.raises(Refused, match="not a readable PDF"):
        expand_document(b"%PDF-1.4\n%%EOF\n", "x.pdf", LIMITS)


def test_image_pixel_limit() -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (4000, 4000)).save(buf, format="PNG")
    with pytest.raises(Refused, match="pixels|too large"):
        expand_document(buf.getvalue(), "big.png", Limits(max_pixels=1_000_000))
    out = expand_document(buf.getvalue(), "big.png", LIMITS)
    assert out.parts[0].ocr == [0]


def test_size_limit_and_unsupported() -> None:
    with pytest.raises(Refused, match="too large"):
        expand_document(b"%PDF" + b"0" * 2000, "x.pdf", Limits(max_bytes=1000))
    with pytest.raises(Refused, match="unsupported"):
        expand_document(b"\x00\x01\x02binary", "x.bin", LIMITS)


def test_sniff_trusts_content_over_names() -> None:
    assert sniff(text_pdf(["x"]), "application/octet-stream", "x.txt") == "pdf"
    assert sniff(b"\x89PNG\r\n\x1a\nrest", "", "x.pdf") == "image"
    assert sniff(docx_of(["x"]), "application/zip", "x.zip") == "docx"
