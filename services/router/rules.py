"""Routing rules: parsed from the tenant's rules.yaml, evaluated without I/O.

    rules:
      - name: Nummerplade
        priority: 10                 # lower runs first
        when: {entity: licence_plate}
        then: {route: parkering, journal: new_case, kle: "05.09.04", receipt: true}

Conditions: `entity` (kind, optionally `equals`), `keywords_any`, `keywords_all` (lemmas or
phrases), `sender_domain`, `mailbox`, `channel`, `form`, `auto_reply`, combined with `all`,
`any` and `not`. Actions: `route` (a unit id, or `case_owner` for the unit owning a matched
case), `not_relevant`, `journal` (none, matched_case, new_case), `kle`, `receipt`.
The first enabled matching rule decides; when none matches, the routing model's prediction
decides if its calibrated probability clears its abstain threshold (`model:` sets the journal
action and receipt of such routes); otherwise the item goes to manual triage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.contracts import Entity, JournalAction, RouteOutcome
from shared.errors import ConfigurationError
from shared.tenant import Case
from shared.text import normalise_keyword


class Condition(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    entity: str | None = None
    equals: str | None = None
    keywords_any: tuple[str, ...] = ()
    keywords_all: tuple[str, ...] = ()
    sender_domain: tuple[str, ...] = ()
    mailbox: tuple[str, ...] = ()
    channel: tuple[str, ...] = ()
    form: tuple[str, ...] = ()
    auto_reply: bool | None = None
    all: tuple[Condition, ...] = ()
    any: tuple[Condition, ...] = ()
    not_: Condition | None = Field(None, alias="not")

    @model_validator(mode="after")
    def _not_empty(self) -> Condition:
        if not self.model_fields_set - {"equals"}:
            raise ValueError("a condition needs at least one test")
        if self.equals is not None and self.entity is None:
            raise ValueError("'equals' needs 'entity'")
        return self


class Action(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    route: str | None = None
    not_relevant: bool = False
    journal: JournalAction = JournalAction.NONE
    kle: str | None = None
    receipt: bool = False

    @model_validator(mode="after")
    def _one_destination(self) -> Action:
        if (self.route is None) == (not self.not_relevant):
            raise ValueError("an action needs exactly one of 'route' or 'not_relevant: true'")
        return self


class ModelPolicy(BaseModel):
    """What a route decided by the model does (the model names only the unit)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    journal: JournalAction = JournalAction.NEW_CASE
    receipt: bool = True


class Rule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    priority: int = 100
    enabled: bool = True
    when: Condition
    then: Action


class RuleSet(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rules: tuple[Rule, ...] = ()
    fallback_receipt: bool = Field(True, description="Send a receipt for items sent to triage.")
    model: ModelPolicy = ModelPolicy()

    @classmethod
    def parse(cls, data: Mapping[str, Any], source: str = "rules.yaml") -> RuleSet:
        try:
            ruleset = cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigurationError(f"{source}: {exc}") from exc
        return ruleset.model_copy(update={"rules": tuple(sorted(
            ruleset.rules, key=lambda r: r.priority))})


@dataclass(frozen=True)
class Prediction:
    """The routing model's answer for an item, as the classifier reported it."""

    label: str
    probability: float
    abstain: bool
    explanation: tuple[str, ...] = ()
    kle: str | None = None


@dataclass(frozen=True)
class Facts:
    """What the rules look at, gathered from the item and its entities."""

    entities: tuple[Entity, ...]
    mailbox: str = ""
    channel: str = "email"
    prediction: Prediction | None = None

    def values(self, kind: str) -> list[str]:
        return [e.value for e in self.entities if e.kind == kind]


@dataclass(frozen=True)
class Decision:
    outcome: RouteOutcome
    unit: str | None
    clerk: str | None = None
    case_number: str | None = None
    journal: JournalAction = JournalAction.NONE
    kle: str | None = None
    receipt: bool = False
    reasons: tuple[str, ...] = ()


Explained = tuple[bool, list[str]]


def _test(cond: Condition, facts: Facts) -> Explained:
    """Whether `cond` holds, and why in words an administrator understands."""
    why: list[str] = []
    checks: list[bool] = []
    if cond.entity is not None:
        values = facts.values(cond.entity)
        hit = [v for v in values if cond.equals is None or v == cond.equals]
        checks.append(bool(hit))
        if hit:
            why.append(f"{cond.entity.replace('_', ' ')} {hit[0]}")
    kws = {normalise_keyword(v) for v in facts.values("keyword")}
    if cond.keywords_any:
        hit = [k for k in cond.keywords_any if normalise_keyword(k) in kws]
        checks.append(bool(hit))
        if hit:
            why.append("keyword " + ", ".join(f"'{k}'" for k in hit))
    if cond.keywords_all:
        ok = all(normalise_keyword(k) in kws for k in cond.keywords_all)
        checks.append(ok)
        if ok:
            why.append("keywords " + ", ".join(f"'{k}'" for k in cond.keywords_all))
    for field, actual in (("sender_domain", facts.values("sender_domain")),
                          ("mailbox", [facts.mailbox]), ("channel", [facts.channel]),
                          ("form", facts.values("form"))):
        wanted: tuple[str, ...] = getattr(cond, field)
        if wanted:
            hit = [a for a in actual if a.lower() in {w.lower() for w in wanted}]
            checks.append(bool(hit))
            if hit:
                why.append(f"{field.replace('_', ' ')} {hit[0]}")
    if cond.auto_reply is not None:
        is_auto = bool(facts.values("auto_reply"))
        checks.append(is_auto == cond.auto_reply)
        why.append("an auto-reply" if is_auto else "not an auto-reply")
    if cond.all:
        results = [_test(c, facts) for c in cond.all]
        checks.append(all(ok for ok, _ in results))
        why += [w for _, ws in results for w in ws]
    if cond.any:
        results = [_test(c, facts) for c in cond.any]
        checks.append(any(ok for ok, _ in results))
        why += [w for ok, ws in results if ok for w in ws]
    if cond.not_ is not None:
        ok, _ = _test(cond.not_, facts)
        checks.append(not ok)
    return all(checks), why


def decide(ruleset: RuleSet, facts: Facts, cases: Mapping[str, Case], *,
           known_units: Iterable[str], fallback_unit: str,
           not_relevant: str = "ikke-relevant") -> Decision:
    """Apply the first matching rule, else the model's confident prediction, else abstain to
    manual triage."""
    units = set(known_units)
    matched = next((cases[n] for n in facts.values("case_number") if n in cases), None)
    for rule in ruleset.rules:
        if not rule.enabled:
            continue
        ok, why = _test(rule.when, facts)
        if not ok:
            continue
        reason = f"rule '{rule.name}' matched " + (" and ".join(why) or "")
        act = rule.then
        if act.not_relevant:
            return Decision(RouteOutcome.NOT_RELEVANT, None, reasons=(reason.strip(),))
        unit, clerk = act.route, None
        if act.route == "case_owner":
            if matched is None or matched.unit not in units:
                continue  # the rule needs a known case; let a later rule decide
            unit, clerk = matched.unit, matched.clerk
            reason += f"; case {matched.case_number} is owned by {unit}/{clerk}"
        elif unit not in units:
            raise ConfigurationError(f"rule '{rule.name}' routes to unknown unit {unit!r}")
        journal = act.journal
        if journal is JournalAction.MATCHED_CASE and matched is None:
            journal = JournalAction.NEW_CASE
        return Decision(RouteOutcome.ROUTED, unit, clerk,
                        matched.case_number if matched else None, journal,
                        act.kle or (matched.kle if matched else None), act.receipt,
                        (reason.strip(),))
    return _by_model(ruleset, facts, matched, units, fallback_unit, not_relevant)


def _by_model(ruleset: RuleSet, facts: Facts, matched: Case | None, units: set[str],
              fallback_unit: str, not_relevant: str) -> Decision:
    p = facts.prediction
    said = f"model {p.probability:.2f} {p.label}" if p is not None else ""
    why = f" ({'; '.join(p.explanation)})" if p is not None and p.explanation else ""
    if p is None or not ruleset.model.enabled:
        reason = "no rule matched: manual triage"
    elif p.abstain or p.label == fallback_unit:
        reason = f"no rule matched and the model abstained ({said}): manual triage"
    elif p.label == not_relevant:
        return Decision(RouteOutcome.NOT_RELEVANT, None, reasons=(said + why,))
    elif p.label not in units:
        reason = f"{said} names an unknown unit: manual triage"
    else:
        journal = ruleset.model.journal
        case_number = None
        if journal is JournalAction.MATCHED_CASE:
            if matched is not None and matched.unit == p.label:
                case_number = matched.case_number
            else:
                journal = JournalAction.NEW_CASE
        return Decision(RouteOutcome.ROUTED, p.label, None, case_number, journal, p.kle,
                        ruleset.model.receipt, (said + why,))
    return Decision(RouteOutcome.TRIAGE, fallback_unit, receipt=ruleset.fallback_receipt,
                    reasons=(reason,))


