"""The reason note beside a scan in the error folder (services/ingest/scanfiles.place): the
mail room reads it, so anything shaped like a CPR number is masked with the shared pattern,
whichever way it is written, and the note names the item."""

from __future__ import annotations

from pathlib import Path

from services.ingest.scanfiles import place, sha_of


def test_reason_note_masks_cpr_numbers_however_written(tmp_path: Path) -> None:
    inbox, errors = tmp_path / "in", tmp_path / "Fejl"
    inbox.mkdir()
    errors.mkdir()
    scan = inbox / "brev.pdf"
    scan.write_bytes(b"%PDF-1.4 not really")
    reason = ("cannot read 0102031234_brev.pdf: page 1 of borger 010203 1234, "
              "kopi 010203-1234")
    moved = place(scan, errors, sha_of(scan), reason, "item-1")
    note = (errors / f"{moved.name}.reason.txt").read_text(encoding="utf-8")
    assert "1234" not in note, note
    assert note.count("[CPR]") == 3 and "cannot read" in note and "item item-1" in note
    assert moved.read_bytes() == b"%PDF-1.4 not really" and not scan.exists()
