"""The rule language of issue 6: every condition and action, explanations, validation naming the
field, and regular expressions that cannot hang the router."""

from __future__ import annotations

import time
from typing import Any

import pytest

from services.classifier.entities import extract
from shared.contracts import JournalAction, RouteOutcome
from shared.rules import RuleError, RuleSet, dump_yaml, parse_yaml
from shared.rules.engine import Facts, Prediction
from shared.rules.replay import Organisation
from shared.tenant import Case

CASES = {"05.09.04-K07-1-25": Case(case_number="05.09.04-K07-1-25", unit="parkering",
                                   clerk="MHA", kle="05.09.04")}
ORG = Organisation(CASES, frozenset({"parkering", "affald", "hovedpost", "borgerservice"}),
                   "hovedpost", {"MHA": "parkering", "LK": "affald"}, regex_timeout=0.05)


def rules(*items: dict[str, Any], **top: Any) -> RuleSet:
    return RuleSet.parse({"rules": list(items), **top})


def rule(when: dict[str, Any], then: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    return {"name": kw.pop("name", "R"), "when": when, "then": then or {"route": "affald"},
            **kw}


def facts(subject: str = "", body: str = "", *, sender: str = "borger@example.dk",
          prediction: Prediction | None = None, form: str | None = None,
          **kw: Any) -> Facts:
    entities = extract(subject, body, sender=sender)
    if form:
        from shared.contracts import Entity
        entities += (Entity(kind="form", value=form, source="form"),)
    return Facts(entities, sender=sender, subject=subject, text=body, prediction=prediction,
                 **kw)


def matches(when: dict[str, Any], f: Facts) -> bool:
    return ORG.decide(rules(rule(when)), f).fired == ("R",)


@pytest.mark.parametrize("when, hit, miss", [
    ({"entity": "licence_plate"}, "bil AB 12 345", "ingen bil"),
    ({"entity": "licence_plate", "equals": "ab12345"}, "bil AB 12 345", "bil CD 12 345"),
    ({"entity": "cpr"}, "cpr 010190-1234", "intet nummer"),
    ({"entity": "cvr", "equals": "29189846"}, "CVR-nr. 29189846", "CVR-nr. 12345678"),
    ({"entity": "kle", "prefix": "05.09"}, "KLE 05.09.04 parkering", "KLE 07.18.10"),
    ({"case_matched": True}, "sag 05.09.04-K07-1-25", "sag 99.99.99-G01-1-26"),
    ({"keywords_any": ["rotte"]}, "Der er rotter i haven", "Der er mus i haven"),
    ({"keywords_all": ["storskrald", "afhentning"]}, "afhentning af storskrald",
     "afhentning af pakker"),
    ({"phrase": "tak for  sidst"}, "Hej\nTak for\nsidst!", "tak og farvel"),
    ({"regex": r"faktura\s*nr\.?\s*\d{4,}"}, "Faktura nr. 123456", "faktura følger"),
])
def test_each_condition_matches_and_misses(when: dict[str, Any], hit: str, miss: str) -> None:
    assert matches(when, facts("", hit))
    assert not matches(when, facts("", miss))


def test_sender_mailbox_channel_form_and_model_conditions() -> None:
    f = facts("x", "y", sender="Anna@Firma.dk", mailbox="post", channel="form", form="klage",
              prediction=Prediction("affald", 0.9, False))
    for when in ({"sender": "anna@firma.dk"}, {"sender_domain": ["firma.dk"]},
                 {"mailbox": "post"}, {"channel": ["form"]}, {"form": "klage"},
                 {"predicted_unit": "affald", "min_probability": 0.85}):
        assert matches(when, f), when
    for when in ({"sender": "bo@firma.dk"}, {"sender_domain": "other.dk"}, {"mailbox": "x"},
                 {"channel": "email"}, {"form": "y"},
                 {"predicted_unit": "affald", "min_probability": 0.95},
                 {"predicted_unit": "parkering"}):
        assert not matches(when, f), when


def test_all_any_not() -> None:
    when = {"all": [{"any": [{"keywords_any": ["rotte"]}, {"entity": "licence_plate"}]},
                    {"not": {"sender_domain": "spam.example"}}]}
    assert matches(when, facts("", "rotter"))
    assert matches(when, facts("", "AB 12 345"))
    assert not matches(when, facts("", "rotter", sender="x@spam.example"))
    assert not matches(when, facts("", "mus"))


def test_explanation_names_rule_evidence_and_model_agreement() -> None:
    rs = rules(rule({"entity": "licence_plate"}, {"route": "parkering"}, name="Nummerplade"))
    d = ORG.decide(rs, facts("", "bil AB 12 345",
                             prediction=Prediction("parkering", 0.94, False)))
    assert d.reasons == ("parkering: rule 'Nummerplade' matched plate AB12345; "
                         "model agreed 0.94",)
    assert d.fired == ("Nummerplade",)
    d = ORG.decide(rs, facts("", "bil AB 12 345", prediction=Prediction("affald", 0.6, False)))
    assert d.reasons[0].endswith("; model said affald 0.60")


def test_cpr_is_never_shown_in_an_explanation() -> None:
    d = ORG.decide(rules(rule({"entity": "cpr"})), facts("", "mit cpr er 010190-1234"))
    assert "a CPR number" in d.reasons[0] and "0101" not in d.reasons[0]


def test_route_to_a_clerk_or_the_case_owner() -> None:
    d = ORG.decide(rules(rule({"keywords_any": ["rotte"]}, {"clerk": "LK"})), facts("", "rotter"))
    assert (d.unit, d.clerk) == ("affald", "LK") and d.reasons[0].startswith("affald/LK: ")
    d = ORG.decide(rules(rule({"case_matched": True},
                              {"route": "case_owner", "journal": "matched_case"})),
                   facts("", "sag 05.09.04-K07-1-25"))
    assert (d.unit, d.clerk, d.case_number, d.journal) == (
        "parkering", "MHA", "05.09.04-K07-1-25", JournalAction.MATCHED_CASE)


def test_new_case_with_kle_and_title_template_receipt_template() -> None:
    rs = rules(rule({"entity": "licence_plate"},
                    {"route": "parkering", "journal": "new_case", "kle": "05.09.04",
                     "case_title": "Parkeringsafgift {plate} ({sender})",
                     "receipt_template": "parkering-klage"}))
    d = ORG.decide(rs, facts("", "bil AB 12 345", sender="a@b.dk"))
    assert (d.journal, d.kle, d.case_title) == (JournalAction.NEW_CASE, "05.09.04",
                                                "Parkeringsafgift AB12345 (a@b.dk)")
    assert d.receipt and d.receipt_template == "parkering-klage"


def test_not_relevant_and_journal_none_without_receipt() -> None:
    d = ORG.decide(rules(rule({"keywords_any": "nyhedsbrev"}, {"not_relevant": True},
                              name="Nyhedsbrev")), facts("", "vores nyhedsbrev"))
    assert d.outcome is RouteOutcome.NOT_RELEVANT and not d.receipt
    assert d.reasons == ("not relevant: rule 'Nyhedsbrev' matched keyword 'nyhedsbrev'",)
    d = ORG.decide(rules(rule({"keywords_any": "rotte"}, {"route": "affald", "journal": "none"})),
                   facts("", "rotter"))
    assert d.journal is JournalAction.NONE and not d.receipt


def test_non_stopping_rule_marks_sensitive_and_later_rule_decides() -> None:
    rs = rules(rule({"entity": "cpr"}, {"sensitive": True}, name="CPR", stop=False, priority=1),
               rule({"keywords_any": "rotte"}, name="Rotter", priority=2))
    d = ORG.decide(rs, facts("", "rotter, cpr 010190-1234"))
    assert (d.unit, d.sensitive, d.fired) == ("affald", True, ("CPR", "Rotter"))
    assert any(r.startswith("marked sensitive: rule 'CPR'") for r in d.reasons)
    d = ORG.decide(rs, facts("", "cpr 010190-1234"))  # no later rule: triage, still sensitive
    assert (d.outcome, d.sensitive) == (RouteOutcome.TRIAGE, True)


def test_non_stopping_destination_is_replaced_by_a_later_stopping_rule() -> None:
    rs = rules(rule({"keywords_any": "rotte"}, {"route": "affald"}, name="A", stop=False,
                    priority=1),
               rule({"entity": "licence_plate"}, {"route": "parkering"}, name="B", priority=2))
    assert ORG.decide(rs, facts("", "rotter")).unit == "affald"
    assert ORG.decide(rs, facts("", "rotter AB 12 345")).unit == "parkering"


def test_model_decides_when_no_rule_matches() -> None:
    f = facts("", "noget", prediction=Prediction("borgerservice", 0.97, False))
    d = ORG.decide(rules(rule({"keywords_any": "rotte"})), f)
    assert (d.outcome, d.unit) == (RouteOutcome.ROUTED, "borgerservice")
    assert d.reasons[0].startswith("model 0.97 borgerservice")


@pytest.mark.parametrize("bad, field", [
    (rule({"regex": "(unclosed"}), "rules.0.when.regex"),
    (rule({"regex": r"(\w+\s?)+$"}), "rules.0.when.regex"),  # catastrophic on a probe
    (rule({"entity": "kle", "prefix": "05"}, {"route": "a", "kle": "5.9"}), "rules.0.then.kle"),
    (rule({"keywords": ["a"]}), "rules.0.when.keywords"),
    (rule({"entity": "cpr"}, {"route": "a", "case_title": "{body}", "journal": "new_case"}),
     "rules.0.then.case_title"),
    (rule({"entity": "cpr"}, {"route": "a", "case_title": "{subject!r}",
                              "journal": "new_case"}), "rules.0.then.case_title"),
    (rule({"entity": "cpr"}, {"route": "a", "receipt_template": "../etc"}),
     "rules.0.then.receipt_template"),
    (rule({"entity": "cpr"}, {"route": "a", "receipt": False, "receipt_template": "x"}),
     "rules.0.then"),
    (rule({"min_probability": 0.5}), "rules.0.when"),
    (rule({"predicted_unit": "a", "min_probability": 1.5}), "rules.0.when.min_probability"),
    (rule({"entity": "cpr"}, {"sensitive": True}), "rules.0"),  # stops without a destination
    (rule({"entity": "cpr"}, {"not_relevant": True, "receipt": True}), "rules.0.then"),
])
def test_invalid_rule_is_refused_naming_the_field(bad: dict[str, Any], field: str) -> None:
    with pytest.raises(RuleError) as caught:
        rules(bad)
    assert field in [f for f, _ in caught.value.problems], caught.value.problems
    assert field in str(caught.value)


def test_duplicate_names_and_unknown_units_or_clerks_are_refused() -> None:
    with pytest.raises(RuleError, match="named 'R'"):
        rules(rule({"entity": "cpr"}), rule({"entity": "cvr"}))
    rs = rules(rule({"entity": "cpr"}, {"route": "nowhere"}, name="a"),
               rule({"entity": "cpr"}, {"route": "affald", "clerk": "MHA"}, name="b"),
               rule({"predicted_unit": "ghost"}, name="c"))
    with pytest.raises(RuleError) as caught:
        rs.check(ORG.clerks_by_unit())
    assert [f for f, _ in caught.value.problems] == [
        "rules.0.then.route", "rules.1.then.clerk", "rules.2.when.predicted_unit"]


def test_regex_that_backtracks_at_run_time_times_out_instead_of_hanging() -> None:
    # Passes the probe at save time (its characters are 'd' and '$'), explodes on digits.
    rs = rules(rule({"regex": r"^(\d|\d\d)+$"}, name="slow"))
    started = time.monotonic()
    d = ORG.decide(rs, facts("", "1" * 5000 + "!"))
    assert time.monotonic() - started < 2
    assert d.outcome is RouteOutcome.TRIAGE


def test_yaml_round_trip_keeps_every_field() -> None:
    rs = rules(rule({"all": [{"regex": "a+b"}, {"not": {"phrase": ["x y"]}}]},
                    {"route": "parkering", "journal": "new_case", "case_title": "{subject}",
                     "receipt_template": "t", "sensitive": True}, stop=False,
                    description="why"), model={"receipt": False})
    assert parse_yaml(dump_yaml(rs), "x") == rs


def test_the_model_does_not_answer_automatic_or_commercial_mail() -> None:
    rs = rules(rule({"keywords_any": "rotte"}), model={"receipt": True})
    said = Prediction("borgerservice", 0.97, False)
    d = ORG.decide(rs, facts("Pas", "Hvornår kan jeg hente mit pas?", prediction=said))
    assert (d.unit, d.receipt) == ("borgerservice", True)
    offer = ("Vi tilbyder pas-fotos til sommerpris: 99 kr. ekskl. moms. Tilbuddet gælder til "
             "1. juli.")
    d = ORG.decide(rs, facts("Pasfoto", offer, prediction=said))
    assert (d.unit, d.receipt) == ("borgerservice", False)
    assert "no receipt" in d.reasons[0]
    d = ORG.decide(rs, facts("Automatisk svar: Pas", "Jeg er på ferie.", prediction=said))
    assert d.receipt is False


def test_triage_does_not_answer_commercial_mail_either() -> None:
    rs = rules(rule({"keywords_any": "rotte"}), fallback_receipt=True)
    offer = ("Vi tilbyder pas-fotos til sommerpris: 99 kr. ekskl. moms. Tilbuddet gælder til "
             "1. juli.")
    assert ORG.decide(rs, facts("Pasfoto", offer)).receipt is False
    assert ORG.decide(rs, facts("Pas", "Hvornår kan jeg hente mit pas?")).receipt is True
