"""Corrections as training data (pure part): the item-format record and the merge rule."""

from __future__ import annotations

from datetime import UTC, datetime

from services.classifier.corrections import Attachment, CorrectedItem, merge, record
from services.classifier.document import Document, Label, LabelledItem, from_labelled


def item(key: str, unit: str, group: str = "dev-1.jsonl") -> LabelledItem:
    return LabelledItem(key, Document(body=key), Label(unit), group)


def test_a_corrected_label_overrides_and_the_latest_correction_wins() -> None:
    files = [item("a", "parkering"), item("b", "affald"), item("a", "parkering")]
    corrected = [item("a", "byggeri", "corrections"), item("c", "affald", "corrections"),
                 item("c", "jobcenter", "corrections")]
    merged = merge(files, corrected)
    assert [(i.id, i.label.unit) for i in merged] == [
        ("a", "byggeri"), ("b", "affald"), ("a", "byggeri"), ("c", "jobcenter")]
    assert merge(files, []) == files


def test_a_form_item_is_written_without_subject_or_sender_and_read_back() -> None:
    at = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
    line = record(CorrectedItem(
        item_id="f1", channel="form", mailbox="forms/storskrald", received_at=at,
        sender_name="", sender_address="", recipients=(), subject="Storskrald",
        body="adresse: Bøgevej 3", attachments=(Attachment("kort.png", "image/png", ""),),
        unit="affald", clerk=None, case_number=None, from_unit="hovedpost",
        reason="storskrald", corrected_at=at))
    assert line["from"] is None and line["subject"] is None
    assert line["received_at"] == "2026-11-02T09:30:00+00:00"
    assert line["label"]["notes"] == "corrected 2026-11-02 from hovedpost: storskrald"
    back = from_labelled(line)
    assert (back.id, back.label.unit, back.document.channel) == ("f1", "affald", "form")
    assert back.document.body == "adresse: Bøgevej 3" and back.document.attachments == ("",)
