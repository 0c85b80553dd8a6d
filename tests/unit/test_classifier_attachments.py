"""Disguised attachment names: a phishing sign the model and the rules read."""

from __future__ import annotations

from pathlib import Path

import pytest

from postfordeler.commands.classifier import read_items, run_evaluation
from services.classifier.attachments import attachment_signs, disguised
from services.classifier.document import Document
from services.classifier.pipeline import Classifier
from shared.tenant import Tenant

TENANT = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "eksempelby"


@pytest.mark.parametrize(("name", "expected"), [
    ("INV-2026-04417.pdf.htm", "pdf.htm"),
    ("Faktura.PDF.html", "pdf.html"),
    ("scan.jpg.exe", "jpg.exe"),
    ("dokument.docx      .js", "docx.js"),  # spaces that push the real extension out of view
    ("Faktura.pdf", None),
    ("referat.2026.pdf", None),
    ("side.html", None),  # a web page that does not pretend to be a document
    ("backup.tar.gz", None),
    ("", None),
])
def test_disguised_names(name: str, expected: str | None) -> None:
    assert disguised(name) == expected


def test_signs_carry_the_extensions() -> None:
    signs = attachment_signs(["ok.pdf", "Regning 010190-1234.pdf.htm"])
    # the extensions, not the name (which may hold a CPR number)
    assert [(e.kind, e.value, e.source) for e in signs] == [
        ("disguised_attachment", "pdf.htm", "attachment")]


def test_a_disguised_attachment_is_set_aside_without_a_receipt(tmp_path: Path) -> None:
    line = ('{"id": "x1", "channel": "email", "mailbox": "post@eksempelby.dk", "from": '
            '{"name": "Regnskab", "address": "billing@example.com"}, "subject": "Faktura 4411", '
            '"body": "Se vedhæftede faktura for levering af materialer til vejarbejde.", '
            '"attachments": [{"filename": "Faktura-4411.pdf.htm", "content_type": "text/html", '
            '"text": "Log ind for at se dokumentet"}], "label": {"unit": "ikke-relevant"}}')
    (tmp_path / "items.jsonl").write_text(line + "\n", encoding="utf-8")
    items = read_items([tmp_path / "items.jsonl"])
    assert items[0].document.attachment_names == ("Faktura-4411.pdf.htm",)
    tenant = Tenant(TENANT)
    classifier = Classifier.from_tenant(tenant)
    assert any(e.kind == "disguised_attachment" for e in classifier.entities(items[0].document))
    metrics, done = run_evaluation(tenant, classifier, items)
    outcome, decision = done[0]
    assert outcome.unit == "ikke-relevant" and not outcome.receipt
    assert "phishing" in " ".join(decision.reasons)
    assert metrics["not_relevant_receipts"] == 0


def test_documents_without_names_have_no_signs() -> None:
    assert attachment_signs(Document().attachment_names) == ()


def test_own_files_leave_out_what_a_forwarded_mail_carried() -> None:
    from services.classifier.attachments import own_files
    from shared.contracts import AttachmentRef, BlobRef

    blob = BlobRef(sha256="0" * 64, size=1, content_type="x")

    def ref(name: str, kind: str, parent: int | None = None) -> AttachmentRef:
        return AttachmentRef(filename=name, content_type=kind, blob=blob, parent=parent)

    files = [ref("svar.eml", "message/rfc822"), ref("bilag.zip", "application/zip", 0),
             ref("a.pdf.htm", "text/html", 1), ref("egen.zip", "application/zip"),
             ref("b.pdf.htm", "text/html", 3), ref("løkke.pdf", "application/pdf", 5)]
    # a.pdf.htm is in a ZIP inside the forwarded mail; b.pdf.htm in the sender's own ZIP;
    # a parent pointing at itself must not hang the walk
    assert own_files(files) == ("svar.eml", "egen.zip", "b.pdf.htm", "løkke.pdf")
