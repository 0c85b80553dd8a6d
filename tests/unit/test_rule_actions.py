"""Rule actions, the pure parts: case titles made safe (no CPR numbers, one line, bounded),
which title a new case gets, unknown receipt templates refused when rules are checked, and a
named template chosen over the form/unit/default ones."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from services.journal.receipt_text import ReceiptContent, ReceiptTemplates, compose
from services.journal.titles import CPR_MARK, MAX_TITLE, case_title, safe_title
from shared.contracts import ItemRouted, JournalAction, RouteOutcome
from shared.errors import ConfigurationError
from shared.receipt_templates import named_receipt_templates
from shared.rules import RuleError, RuleSet


@pytest.mark.parametrize("text", [
    "Sag om 010190-1234", "Sag om 0101901234", "Sag om 010190 1234", "Sag om 01.01.90-1234",
    "Sag om 010190-XXXX", "Sag om 311299-0000"])
def test_cpr_numbers_never_reach_a_title(text: str) -> None:
    title = safe_title(text, "x")
    assert title == f"Sag om {CPR_MARK}"


@pytest.mark.parametrize("text", [
    "Parkeringsafgift AB12345", "Sag 05.09.04-G01-7-26", "EMN-2024-000123", "CVR 12345678",
    "Tlf. 12 34 56 78", "Møde 24.11.2026"])
def test_other_numbers_stay(text: str) -> None:
    assert safe_title(text, "x") == text


def test_titles_are_one_bounded_line() -> None:
    assert safe_title("  a\tb\r\n\x00c  ", "x") == "a b c"
    long = safe_title("ord " * 200, "x")
    assert len(long) == MAX_TITLE and long.endswith("…")
    assert safe_title(" \n ", "Henvendelse (email)") == "Henvendelse (email)"


def _event(journal: JournalAction, title: str | None) -> ItemRouted:
    return ItemRouted(correlation_id=uuid.uuid4(), producer="router", item_id=uuid.uuid4(),
                      outcome=RouteOutcome.ROUTED, unit="parkering", journal=journal,
                      case_title=title)


def test_the_rules_title_only_for_a_new_case() -> None:
    assert case_title(_event(JournalAction.NEW_CASE, "Afgift AB12345"), "Emne", "email") == (
        "Afgift AB12345")
    assert case_title(_event(JournalAction.NEW_CASE, None), "Emne 0101901234", "email") == (
        f"Emne {CPR_MARK}")
    # a matched case the ESDH lacked gets a new case titled by the subject
    assert case_title(_event(JournalAction.MATCHED_CASE, None), None, "form") == (
        "Henvendelse (form)")


def _named(tmp_path: Path) -> Path:
    named = tmp_path / "receipts" / "named"
    named.mkdir(parents=True)
    (named / "klage.txt.j2").write_text("Klage modtaget: {{ reference }}\n", encoding="utf-8")
    (named / "klage.html.j2").write_text("<p>{{ subject }}</p>", encoding="utf-8")
    (named / "kort.txt.j2").write_text("Kort.\n", encoding="utf-8")
    (named / "ikke-en-skabelon.txt").write_text("x", encoding="utf-8")
    unit = tmp_path / "receipts" / "unit"
    unit.mkdir()
    (unit / "parkering.txt.j2").write_text("Enhedens kvittering\n", encoding="utf-8")
    return tmp_path


def test_rules_naming_a_missing_template_are_refused(tmp_path: Path) -> None:
    templates = named_receipt_templates(_named(tmp_path))
    assert templates == {"klage", "kort"}
    assert named_receipt_templates(tmp_path / "none") == frozenset()
    rs = RuleSet.parse({"rules": [
        {"name": "A", "when": {"entity": "licence_plate"},
         "then": {"route": "parkering", "receipt_template": "klage"}},
        {"name": "B", "when": {"entity": "cvr"},
         "then": {"route": "parkering", "receipt_template": "findes-ikke"}}]})
    units = {"parkering": ["ALA"]}
    rs.check(units)  # without the tenant's templates nothing is checked
    with pytest.raises(RuleError) as refused:
        rs.check(units, receipt_templates=templates)
    assert [f for f, _ in refused.value.problems] == ["rules.1.then.receipt_template"]


def test_a_named_template_goes_before_unit_and_default(tmp_path: Path) -> None:
    templates = ReceiptTemplates(_named(tmp_path))
    content = ReceiptContent(item_id=uuid.uuid4(), to="borger@example.dk", subject="<Klage>",
                             municipality="Demoby", domain="demoby.dk",
                             from_address="post@demoby.dk", unit_id="parkering")
    assert templates.render(content)[0] == "Enhedens kvittering\n"
    text, html = templates.render(ReceiptContent(**{**content.__dict__, "template": "klage"}))
    assert text.startswith("Klage modtaget: PF-") and html == "<p>&lt;Klage&gt;</p>"
    short = ReceiptContent(**{**content.__dict__, "template": "kort"})
    assert templates.render(short) == ("Kort.\n", None)
    assert compose(short, templates).get_content_type() == "text/plain"
    with pytest.raises(ConfigurationError):
        templates.render(ReceiptContent(**{**content.__dict__, "template": "../receipt"}))


def test_getorganized_attachment_names_carry_no_cpr_numbers() -> None:
    from services.journal.getorganized import file_name

    name = file_name("item:x:document", "010190-1234 ansøgning.pdf", 1)
    assert "010190" not in name and name.endswith("-1-CPR_ansøgning.pdf")
    assert file_name("k", "afgift.pdf") == file_name("k", "afgift.pdf")  # still deterministic


def test_the_items_own_reference_is_kept_in_file_names_even_when_cpr_shaped() -> None:
    # PF- and ten hex digits of the item id: about one id in 200 gives ten decimal digits
    # shaped like a CPR number (seen: PF-2400260572), which must stay the item's reference.
    import uuid

    from services.journal.filing import files_of
    from services.journal.getorganized import file_name
    from shared.personal import scrub_file_name

    item = uuid.UUID("24002605-7228-4b1e-9c3d-000000000001")
    raw = (b"From: a@b.dk\nSubject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; "
           b"boundary=B\n\n--B\nContent-Type: text/plain\n\nhej\n--B\nContent-Type: "
           b"application/pdf\nContent-Disposition: attachment; filename=\"PF-0101901234.pdf\""
           b"\n\n%PDF\n--B--\n")
    files = files_of(item, raw)
    assert files[0].name == "PF-2400260572.eml"
    assert file_name("k", files[0].name).endswith("-0-PF-2400260572.eml")
    assert scrub_file_name(files[0].name) == "PF-2400260572.eml"
    # a sender's file posing as a reference is masked where it is read
    assert "0101901234" not in files[1].name and "0101901234" not in scrub_file_name(
        files[1].name)
    assert "0101901234" not in scrub_file_name("PF-0101901234 kopi.pdf")


@pytest.mark.parametrize("name", ["cpr_010190_1234.pdf", "010190/1234.pdf", "010190–1234.pdf",
                                  "010190.1234.pdf", "0101901234.pdf", "01 01 90-1234.pdf"])
def test_cpr_numbers_with_any_separator_leave_file_names(name: str) -> None:
    from services.journal.getorganized import file_name
    from shared.personal import scrub_cpr, scrub_file_name

    for masked in (scrub_cpr(name), scrub_file_name(name), file_name("k", name)):
        assert "1234" not in masked, masked
