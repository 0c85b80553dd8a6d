"""The MIME domain (services/ingest/mime.py) against real corpus messages and hand-made ones."""

from __future__ import annotations

import os
from email.message import EmailMessage
from pathlib import Path

import pytest

from services.ingest.htmltext import html_to_text
from services.ingest.mime import decode_text, parse_message, summarize
from shared.contracts import Address
from shared.errors import InvalidInput
from tests.conftest import CORPUS, unavailable

MIME_CORPUS = CORPUS / "mime"
CORPUS_FILES = sorted(p for p in MIME_CORPUS.rglob("*")
                      if p.is_file() and p.suffix != ".tsv") if MIME_CORPUS.is_dir() else []


@pytest.fixture(autouse=True)
def _needs_corpus(request: pytest.FixtureRequest) -> None:
    if "corpus" in request.node.name and not MIME_CORPUS.is_dir():
        unavailable(f"the shared MIME corpus at {MIME_CORPUS} (set POSTFORDELER_CORPUS)")


def test_corpus_is_present() -> None:
    assert len(CORPUS_FILES) > 200, f"MIME corpus missing under {MIME_CORPUS}"


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: str(p.relative_to(MIME_CORPUS)))
def test_corpus_message_extracts_or_is_invalid(path: Path) -> None:
    raw = path.read_bytes()
    try:
        parsed = parse_message(raw)
    except InvalidInput as exc:
        assert "unparseable" in str(exc) or "unextractable" in str(exc)
        return
    assert isinstance(parsed.text, str)
    for att in parsed.attachments:
        assert att.filename and "/" not in att.filename
        assert att.content_type
        if att.content_type.startswith("text/"):
            assert att.text is not None


def test_most_of_the_corpus_extracts() -> None:
    ok = 0
    for path in CORPUS_FILES:
        try:
            parse_message(path.read_bytes())
            ok += 1
        except InvalidInput:
            pass
    assert ok >= len(CORPUS_FILES) - 3


def _corpus(name: str) -> bytes:
    return (MIME_CORPUS / name).read_bytes()


def test_corpus_bounces_are_auto_submitted() -> None:
    for name in ("flanker/bounce_office365.eml", "ruby-mail/multipart_report_emails_report_530.eml",
                 "mimekit/messages_disposition-notification.txt"):
        assert parse_message(_corpus(name)).auto_submitted, name
    plain = parse_message(_corpus("ruby-mail/plain_emails_basic_email.eml"))
    assert not plain.auto_submitted
    assert plain.subject == "Testing 123"
    assert plain.sender.address == "test@lindsaar.net"


def test_corpus_encoded_filenames() -> None:
    name = "ruby-mail/attachment_emails_attachment_with_quoted_filename.eml"
    parsed = parse_message(_corpus(name))
    assert [a.filename for a in parsed.attachments] == ["Eelanalüüsi päring.jpg"]
    parsed = parse_message(_corpus("ruby-mail/multi_charset_japanese_attachment.eml"))
    assert parsed.attachments[0].filename == "てすと.txt"


def _mail(**headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = headers.pop("From", "Søren Ærø <soren@example.dk>")
    msg["To"] = headers.pop("To", "post@eksempelby.dk, Byg <byg@eksempelby.dk>")
    msg["Subject"] = headers.pop("Subject", "Ansøgning om byggetilladelse")
    msg["Message-ID"] = headers.pop("Message_ID", "<abc.123@example.dk>")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    return msg


def test_plain_mail_with_danish_attachment_names() -> None:
    msg = _mail(Cc="Post@Eksempelby.dk")
    msg.set_content("Hej kommune,\nvedlagt tegninger.\n")
    msg.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf",
                       filename="Tegning æøå.pdf")  # written as RFC 2231
    msg.add_attachment("Bilag med æøå", subtype="plain", filename="bilag.txt")
    parsed = parse_message(msg.as_bytes())
    assert parsed.subject == "Ansøgning om byggetilladelse"
    assert parsed.sender.name == "Søren Ærø" and parsed.sender.address == "soren@example.dk"
    assert parsed.recipients == ("post@eksempelby.dk", "byg@eksempelby.dk")
    assert parsed.message_id == "<abc.123@example.dk>"
    assert parsed.text.strip() == "Hej kommune,\nvedlagt tegninger."
    assert [(a.filename, a.content_type) for a in parsed.attachments] == [
        ("Tegning æøå.pdf", "application/pdf"), ("bilag.txt", "text/plain")]
    assert parsed.attachments[0].data == b"%PDF-1.4 fake"
    assert parsed.attachments[0].text is None
    assert parsed.attachments[1].text == "Bilag med æøå\n"
    assert not parsed.auto_submitted


def test_rfc2047_filename_in_quoted_parameter() -> None:
    raw = (b"From: a@example.dk\r\nSubject: =?iso-8859-1?q?K=F8rekort?=\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n"
           b"--XX\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nHej \xe6\xf8\xe5\r\n"
           b"--XX\r\nContent-Type: application/pdf; name=\"=?utf-8?B?w6bDuMOlLnBkZg==?=\"\r\n"
           b"Content-Disposition: attachment; filename=\"=?utf-8?B?w6bDuMOlLnBkZg==?=\"\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\naGVq\r\n--XX--\r\n")
    parsed = parse_message(raw)
    assert parsed.subject == "Kørekort"
    assert parsed.text.strip() == "Hej æøå"
    assert parsed.attachments[0].filename == "æøå.pdf"
    assert parsed.attachments[0].data == b"hej"


def test_wrong_declared_charset_falls_back() -> None:
    # declared UTF-8 but written in cp1252 (Outlook does this): must not crash or lose æøå
    raw = (b"From: a@example.dk\r\nSubject: x\r\nContent-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\nGr\xf8n \x93kasse\x94 \xe6\xf8\xe5\r\n")
    parsed = parse_message(raw)
    assert parsed.text.strip() == "Grøn \u201ckasse\u201d æøå"
    assert any("charset fallback" in d for d in parsed.defects)


def test_unknown_charset_and_raw_8bit_header() -> None:
    raw = ("From: Jørgen <j@example.dk>\r\nSubject: Vejarbejde på Åvej\r\n"
           "Content-Type: text/plain; charset=x-unknown-charset\r\n\r\nTræer på vejen\r\n"
           ).encode()
    parsed = parse_message(raw)
    assert parsed.subject == "Vejarbejde på Åvej"
    assert parsed.sender.name == "Jørgen"
    assert parsed.text.strip() == "Træer på vejen"


def test_decode_text_never_fails() -> None:
    assert decode_text("æøå".encode(), "utf-8") == ("æøå", False)
    assert decode_text("æøå".encode("latin-1"), "iso-8859-1") == ("æøå", False)
    assert decode_text("æøå".encode("cp1252"), "utf-8") == ("æøå", True)
    assert decode_text(b"\x81\x8d\x8f", "bogus")[0] == "\x81\x8d\x8f"  # latin-1, the last resort
    assert decode_text(b"abc", "base64") == ("abc", True)  # not a text codec: utf-8


def test_html_only_mail_becomes_text() -> None:
    msg = _mail()
    msg.set_content("<html><head><style>p {color: red}</style><script>alert('x')</script>"
                    "</head><body><p>K&aelig;re kommune,</p><p>Mit CPR &amp; sag<br>står her"
                    "</p><table><tr><td>a</td><td>b</td></tr></table></body></html>",
                    subtype="html")
    parsed = parse_message(msg.as_bytes())
    assert "alert" not in parsed.text and "color" not in parsed.text
    assert parsed.text == "Kære kommune,\n\nMit CPR & sag\nstår her\n\na b"


def test_alternative_prefers_plain() -> None:
    msg = _mail()
    msg.set_content("Den rene tekst")
    msg.add_alternative("<p>HTML-udgaven</p>", subtype="html")
    assert parse_message(msg.as_bytes()).text.strip() == "Den rene tekst"


def test_html_to_text_is_lenient() -> None:
    assert html_to_text("<p>unclosed <b>bold<div>x</p></span>") == "unclosed bold\nx"
    assert html_to_text("<style>.a{}</style>") == ""


@pytest.mark.parametrize("headers", [
    {"Auto_Submitted": "auto-replied"},
    {"Auto_Submitted": "auto-generated; owner-email=\"x@example.dk\""},
    {"Precedence": "bulk"},
    {"Precedence": "junk"},
    {"X_Auto_Response_Suppress": "All"},
    {"List_Id": "<nyhedsbrev.example.dk>"},
])
def test_auto_replies_are_detected(headers: dict[str, str]) -> None:
    msg = _mail(**headers)
    msg.set_content("Jeg er på ferie")
    assert parse_message(msg.as_bytes()).auto_submitted


def test_auto_submitted_no_is_a_human() -> None:
    msg = _mail(Auto_Submitted="no", Precedence="first-class")
    msg.set_content("Hej")
    assert not parse_message(msg.as_bytes()).auto_submitted


def test_broken_part_does_not_crash() -> None:
    raw = (b"From: a@example.dk\r\nSubject: x\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
           b"--B\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           b"!!!not base64***\r\n"
           b"--B\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: x-weird\r\n\r\n"
           b"data\r\n--B--\r\n")
    parsed = parse_message(raw)
    assert len(parsed.attachments) == 1 and parsed.attachments[0].filename == "part-3.pdf"


@pytest.mark.parametrize("raw, reason", [
    (b"", "empty"),
    (b"  \r\n\r\n \t", "empty"),
    (os.urandom(64).replace(b"\n", b"") + b"\x00\x01", "binary"),
    (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\x00", "binary"),
    (b"Hello, this is just some text\nand not a mail at all\n", "no mail header"),
    (b"Note: not a mail either\n\nbody\n", "no mail header"),
])
def test_unparseable_messages(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        parse_message(raw)
    with pytest.raises(InvalidInput, match=reason):
        summarize(raw)


def test_summary_for_the_poller() -> None:
    raw = (b"\xef\xbb\xbfMessage-ID:   <x@y>  (comment)\r\n"
           b"From: =?utf-8?q?=C3=85se?= <ase@x.dk>\r\nSubject: Hej\r\n\r\nbody")
    summary = summarize(raw)
    assert summary.message_id == "<x@y>"
    assert summary.sender.name == "Åse" and summary.sender.address == "ase@x.dk"
    assert summary.subject == "Hej"
    assert summarize(b"Subject: none\r\n\r\n").message_id is None


def test_pdf_files_from_the_corpus_are_not_mail() -> None:
    pdfs = sorted((CORPUS / "bad").glob("*.pdf"))[:5]
    assert pdfs
    for pdf in pdfs:
        with pytest.raises(InvalidInput):
            parse_message(pdf.read_bytes())


def test_control_characters_are_removed_from_headers() -> None:
    raw = (b"From: =?utf-8?q?Eve=00?= <eve@example.dk>\r\nSubject: =?utf-8?q?a=00b=07c?=\r\n"
           b"Message-ID: <id=?utf-8?q?=00?=@x>\r\n\r\nbody")
    parsed = parse_message(raw)
    assert parsed.subject == "abc"
    assert parsed.sender == Address(name="Eve", address="eve@example.dk")
    assert "\x00" not in (parsed.message_id or "")
