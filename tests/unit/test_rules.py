from __future__ import annotations

import pytest

from services.classifier.entities import extract
from services.router import load_rules
from services.router.rules import Facts, RuleSet, decide
from shared.contracts import JournalAction, RouteOutcome
from shared.errors import ConfigurationError
from shared.settings import DEMO_TENANT_DIR
from shared.tenant import Case, Tenant

TENANT = Tenant(DEMO_TENANT_DIR)
RULES = load_rules(TENANT)


def route(subject: str, body: str, **kw):  # type: ignore[no-untyped-def]
    facts = Facts(extract(subject, body, **kw), mailbox="post")
    return decide(RULES, facts, TENANT.cases, known_units=TENANT.units,
                  fallback_unit=TENANT.fallback_unit)


def test_plate_routes_to_parking_and_explains_why() -> None:
    d = route("Afgift", "Min bil AB 12 345 fik en afgift")
    assert (d.outcome, d.unit, d.journal) == (RouteOutcome.ROUTED, "parkering",
                                              JournalAction.NEW_CASE)
    assert d.reasons == ("parkering: rule 'Nummerplade eller parkering' matched plate AB12345",)
    assert d.fired == ("Nummerplade eller parkering",)


def test_known_case_goes_to_its_owner_and_is_journalised_there() -> None:
    d = route("Sv: sag 02.34.02-P19-412-26", "tegninger vedlagt")
    assert (d.unit, d.clerk, d.case_number) == ("byggeri", "EVJ", "02.34.02-P19-412-26")
    assert d.journal is JournalAction.MATCHED_CASE
    assert "owned by byggeri/EVJ" in d.reasons[0]


def test_unknown_case_number_falls_through_to_later_rules() -> None:
    d = route("sag 99.99.99-G01-1-26", "rotter i kælderen")
    assert (d.unit, d.case_number) == ("natur-miljoe", None)


def test_auto_reply_is_not_relevant_before_anything_else() -> None:
    d = route("Automatisk svar", "parkering AB 12 345", auto_submitted=True)
    assert d.outcome is RouteOutcome.NOT_RELEVANT and not d.receipt


def test_nothing_matches_abstains_to_triage() -> None:
    d = route("Hej", "Et spørgsmål om noget")
    assert (d.outcome, d.unit) == (RouteOutcome.TRIAGE, "hovedpost")
    assert d.reasons == ("no rule matched: manual triage",)


def test_all_any_not_combine() -> None:
    rules = RuleSet.parse({"rules": [{
        "name": "x", "when": {"all": [{"keywords_any": ["rotter"]},
                                      {"not": {"sender_domain": ["spam.example"]}}]},
        "then": {"route": "natur-miljoe"}}]})
    units = ["natur-miljoe"]
    ok = decide(rules, Facts(extract("", "rotter", sender="a@b.dk")), {}, known_units=units,
                fallback_unit="hovedpost")
    no = decide(rules, Facts(extract("", "rotter", sender="a@spam.example")), {},
                known_units=units, fallback_unit="hovedpost")
    assert ok.unit == "natur-miljoe" and no.outcome is RouteOutcome.TRIAGE


def test_disabled_rule_is_skipped() -> None:
    rules = RuleSet.parse({"rules": [{"name": "x", "enabled": False,
                                      "when": {"keywords_any": ["rotter"]},
                                      "then": {"route": "a"}}]})
    d = decide(rules, Facts(extract("", "rotter")), {}, known_units=["a"], fallback_unit="h")
    assert d.outcome is RouteOutcome.TRIAGE


@pytest.mark.parametrize("bad, field", [
    ({"rules": [{"name": "x", "when": {}, "then": {"route": "a"}}]}, "when"),
    ({"rules": [{"name": "x", "when": {"entity": "cpr"}, "then": {}}]}, "then"),
    ({"rules": [{"name": "x", "when": {"entity": "cpr"}, "then": {"route": "a",
                                                                   "journal": "maybe"}}]},
     "journal"),
    ({"rules": [{"name": "x", "when": {"keyword": ["a"]}, "then": {"route": "a"}}]}, "keyword"),
])
def test_invalid_rules_are_refused_naming_the_field(bad: dict, field: str) -> None:
    with pytest.raises(ConfigurationError, match=field):
        RuleSet.parse(bad)


def test_route_to_unknown_unit_is_a_configuration_error() -> None:
    rules = RuleSet.parse({"rules": [{"name": "x", "when": {"keywords_any": ["rotter"]},
                                      "then": {"route": "nowhere"}}]})
    with pytest.raises(ConfigurationError, match="nowhere"):
        decide(rules, Facts(extract("", "rotter")), {}, known_units=["a"], fallback_unit="h")


def test_case_owner_needs_a_known_unit() -> None:
    cases = {"05.09.04-K07-1-25": Case(case_number="05.09.04-K07-1-25", unit="gone")}
    rules = RuleSet.parse({"rules": [{"name": "c", "when": {"entity": "case_number"},
                                      "then": {"route": "case_owner"}}]})
    d = decide(rules, Facts(extract("", "sag 05.09.04-K07-1-25")), cases, known_units=["a"],
               fallback_unit="h")
    assert d.outcome is RouteOutcome.TRIAGE


def test_a_case_title_keeps_every_placeholder_and_no_cpr_number() -> None:
    rules = RuleSet.model_validate({"rules": [{
        "name": "Afgift", "when": {"entity": "licence_plate"},
        "then": {"route": "parkering", "journal": "new_case", "kle": "05.09.04",
                 "case_title": "Afgift {plate} - {subject} - {sender}"}}]})
    subject = "Klage 010190-1234 " + "meget lang " * 60
    facts = Facts(extract(subject, "Min bil AB 12 345"), mailbox="post", subject=subject,
                  sender="Ole\nHansen")
    d = decide(rules, facts, TENANT.cases, known_units=TENANT.units,
               fallback_unit=TENANT.fallback_unit)
    assert d.case_title is not None and d.case_title.startswith("Afgift AB12345 - Klage [CPR-nr.]")
    assert d.case_title.endswith(" - Ole Hansen")  # the subject was cut, not the sender
    assert "010190" not in d.case_title and "\n" not in d.case_title
