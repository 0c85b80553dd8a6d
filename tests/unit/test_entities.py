from __future__ import annotations

from services.classifier.entities import extract
from shared.text import keywords, normalise_keyword


def kinds(entities, kind):  # type: ignore[no-untyped-def]
    return [e.value for e in entities if e.kind == kind]


def test_licence_plates_in_every_written_form_normalise_alike() -> None:
    text = "AB 12 345, ab12345, AB-12-345 og cd 34567"
    assert kinds(extract("", text), "licence_plate") == ["AB12345", "CD34567"]


def test_plate_positions_point_at_the_text() -> None:
    text = "Bilen XY 98 765 holdt der"
    (plate,) = [e for e in extract("", text) if e.kind == "licence_plate"]
    assert text[plate.start:plate.end] == "XY 98 765"


def test_numbers_that_only_look_like_plates_inside_other_tokens_are_ignored() -> None:
    assert kinds(extract("", "ordre ABC12345X og sag 05.09.04-K07-131-25"), "licence_plate") == []


def test_case_numbers_of_the_major_esdh_systems() -> None:
    text = "sag 05.09.04-K07-131-25, BOR-2024-000123 og S2024-12345"
    assert kinds(extract("", text), "case_number") == [
        "05.09.04-K07-131-25", "BOR-2024-000123", "S2024-12345"]


def test_cpr_is_detected_with_a_valid_date_and_masked() -> None:
    entities = extract("", "CPR 010190-1234, ikke 320190-1234 eller 311390-1234; 2902001234")
    assert kinds(entities, "cpr") == ["010190-XXXX", "290200-XXXX"]
    assert all("1234" not in e.value for e in entities)


def test_sender_domain_and_auto_reply() -> None:
    entities = extract("Hej", "tekst", sender="Some.One@Example.ORG", auto_submitted=True)
    assert kinds(entities, "sender_domain") == ["example.org"]
    assert kinds(entities, "auto_reply") == ["true"]


def test_keywords_match_inflected_danish_forms() -> None:
    assert normalise_keyword("Parkeringsafgiften") == normalise_keyword("parkeringsafgifter")
    assert normalise_keyword("parkeringsafgift") == normalise_keyword("Parkeringsafgifterne")
    assert "rott" in keywords("Der er rotter i haven")
    assert normalise_keyword("rotte") == "rott"
