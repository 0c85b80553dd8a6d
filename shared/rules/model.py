"""The rule language administrators write, and its validation. Pure: no I/O.

    rules:
      - name: Nummerplade
        priority: 10                 # lower runs first
        when: {entity: licence_plate}
        then: {route: parkering, journal: new_case, kle: "05.09.04", receipt: true}

Conditions (every test given in one condition must hold; combine with `all`, `any`, `not`):
`entity` (a kind: licence_plate, cpr, cvr, case_number, kle, ...; with `equals` a value, with
`prefix` a value's start, e.g. a KLE group), `case_matched` (a case number the register
knows), `keywords_any` / `keywords_all` (lemmas, as the classifier produces them), `phrase`
(exact phrases in the text), `regex` (a regular expression on the text, checked when saved and
run with a timeout), `sender` (addresses), `sender_domain`, `mailbox`, `channel`, `form`,
`predicted_unit` (the routing model's unit, with `min_probability`), `auto_reply`.

Actions: `route` (a unit, or `case_owner`), `clerk` (initials; the clerk's unit unless `route`
names one), `not_relevant`; `journal` (none, matched_case, new_case) with `kle` and
`case_title` (a template: {subject} {sender} {unit} {plate} {case} {kle} {form} {cvr});
`receipt` with an optional `receipt_template` name; `sensitive`. A rule with `stop: false` adds
its marks (sensitive, receipt template) and lets later rules decide the destination.
"""

from __future__ import annotations

import re
import string
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import regex
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.contracts import JournalAction
from shared.errors import ConfigurationError

REGEX_FLAGS = regex.IGNORECASE | regex.MULTILINE | regex.VERSION1
# When a pattern is saved it is tried on these probes (built from its own characters) with
# this timeout; one that backtracks catastrophically on them is refused. The router still runs
# every pattern with a timeout, because no probe finds every bad pattern.
PROBE_TIMEOUT = 0.2
TITLE_FIELDS = frozenset({"subject", "sender", "unit", "plate", "case", "kle", "form", "cvr"})
_TEMPLATE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class RuleError(ConfigurationError):
    """Rules that cannot be saved or loaded. `problems` pairs each offending field (a dotted
    path such as `rules.2.when.regex`) with what is wrong with it."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(f"{f}: {m}" for f, m in problems))


class Condition(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    entity: str | None = None
    equals: str | None = None
    prefix: str | None = None
    case_matched: bool | None = None
    keywords_any: tuple[str, ...] = ()
    keywords_all: tuple[str, ...] = ()
    phrase: tuple[str, ...] = ()
    regex: str | None = None
    sender: tuple[str, ...] = ()
    sender_domain: tuple[str, ...] = ()
    mailbox: tuple[str, ...] = ()
    channel: tuple[str, ...] = ()
    form: tuple[str, ...] = ()
    predicted_unit: tuple[str, ...] = ()
    min_probability: float | None = Field(None, ge=0.0, le=1.0)
    auto_reply: bool | None = None
    all: tuple[Condition, ...] = ()
    any: tuple[Condition, ...] = ()
    not_: Condition | None = Field(None, alias="not")

    @field_validator("keywords_any", "keywords_all", "phrase", "sender", "sender_domain",
                     "mailbox", "channel", "form", "predicted_unit", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("regex")
    @classmethod
    def _regex_compiles_and_terminates(cls, pattern: str | None) -> str | None:
        if pattern is None:
            return None
        try:
            compiled = regex.compile(pattern, REGEX_FLAGS)
        except regex.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        chars = sorted({c for c in pattern if c.isalnum() or c in " .-_@"} or {"a"})
        for probe in [c * 3000 + "!" for c in chars[:8]] + ["".join(chars) * 500 + "\n!"]:
            try:
                compiled.search(probe, timeout=PROBE_TIMEOUT)
            except TimeoutError:
                raise ValueError("the regular expression takes too long on a test text "
                                 "(catastrophic backtracking): simplify it") from None
        return pattern

    @model_validator(mode="after")
    def _not_empty(self) -> Condition:
        # A test given as null or [] is no test: stored rules drop defaults, so such a
        # condition would be saved and then fail to load.
        tests = [name for name in self.model_fields_set - {"equals", "prefix", "min_probability"}
                 if getattr(self, name) not in (None, ())]
        if not tests:
            raise ValueError("a condition needs at least one test")
        if (self.equals is not None or self.prefix is not None) and self.entity is None:
            raise ValueError("'equals' and 'prefix' need 'entity'")
        if self.min_probability is not None and not self.predicted_unit:
            raise ValueError("'min_probability' needs 'predicted_unit'")
        return self

    @property
    def needs_text(self) -> bool:
        return bool(self.phrase or self.regex) or any(
            c.needs_text for c in (*self.all, *self.any, *((self.not_,) if self.not_ else ())))


class Action(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    route: str | None = None
    clerk: str | None = None
    not_relevant: bool = False
    journal: JournalAction = JournalAction.NONE
    kle: str | None = Field(None, pattern=r"^\d\d(\.\d\d){0,2}$")
    case_title: str | None = Field(None, max_length=300)
    receipt: bool = False
    receipt_template: str | None = None
    sensitive: bool = False

    @field_validator("case_title")
    @classmethod
    def _known_placeholders(cls, title: str | None) -> str | None:
        if title is None:
            return None
        try:
            parts = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(title)
                     if f is not None]
        except ValueError as exc:
            raise ValueError(f"not a valid title template: {exc}") from None
        if any(spec or conv for _, spec, conv in parts):
            raise ValueError("placeholders take no format ({subject}, not {subject:...})")
        names = {f for f, _, _ in parts}
        unknown = sorted(names - TITLE_FIELDS)
        if unknown:
            raise ValueError(f"unknown placeholder {{{unknown[0]}}}; use one of "
                             + ", ".join(f"{{{f}}}" for f in sorted(TITLE_FIELDS)))
        return title

    @field_validator("receipt_template")
    @classmethod
    def _template_name(cls, name: str | None) -> str | None:
        if name is not None and not _TEMPLATE_NAME.match(name):
            raise ValueError("a template name is lower-case letters, digits, '-' and '_'")
        return name

    @model_validator(mode="after")
    def _consistent(self) -> Action:
        if self.not_relevant and (self.route or self.clerk):
            raise ValueError("'not_relevant' cannot be combined with 'route' or 'clerk'")
        if self.not_relevant and (self.receipt or self.journal is not JournalAction.NONE):
            raise ValueError("a not relevant item is neither answered nor journalised")
        if self.receipt_template is not None:
            if "receipt" in self.model_fields_set and not self.receipt:
                raise ValueError("'receipt_template' needs 'receipt: true'")
            object.__setattr__(self, "receipt", True)  # naming a template asks for a receipt
        if self.case_title is not None and self.journal is not JournalAction.NEW_CASE:
            raise ValueError("'case_title' needs 'journal: new_case'")
        return self

    @property
    def destination(self) -> bool:
        return bool(self.route or self.clerk or self.not_relevant)


class ModelPolicy(BaseModel):
    """What a route decided by the model does (the model names only the unit)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    journal: JournalAction = JournalAction.NEW_CASE
    receipt: bool = True


class Rule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    priority: int = 100
    enabled: bool = True
    stop: bool = Field(True, description="A matching rule ends the evaluation.")
    when: Condition
    then: Action

    @model_validator(mode="after")
    def _stop_needs_destination(self) -> Rule:
        if self.stop and not self.then.destination:
            raise ValueError("then: a rule that stops needs 'route', 'clerk' or "
                             "'not_relevant: true' (or 'stop: false' to only mark the item)")
        return self


class RuleSet(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rules: tuple[Rule, ...] = ()
    fallback_receipt: bool = Field(True, description="Send a receipt for items sent to triage.")
    model: ModelPolicy = ModelPolicy()

    @model_validator(mode="after")
    def _unique_names(self) -> RuleSet:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"two rules are named {rule.name!r}; names must be unique")
            seen.add(rule.name)
        return self

    @classmethod
    def parse(cls, data: Mapping[str, Any] | None, source: str = "rules.yaml") -> RuleSet:
        """Validate `data`; a RuleError names every offending field."""
        try:
            ruleset = cls.model_validate(data or {})
        except ValidationError as exc:
            raise RuleError(source, problems(exc)) from None
        return ruleset.model_copy(update={"rules": tuple(sorted(
            ruleset.rules, key=lambda r: r.priority))})

    def document(self) -> dict[str, Any]:
        """The rule set as plain data (YAML export, database), defaults left out."""
        data: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        data["rules"] = [r.model_dump(mode="json", by_alias=True, exclude_defaults=True)
                         for r in self.rules]
        data.setdefault("fallback_receipt", self.fallback_receipt)
        return data

    @property
    def needs_text(self) -> bool:
        return any(r.enabled and r.when.needs_text for r in self.rules)

    def check(self, units: Mapping[str, Iterable[str]], source: str = "rules", *,
              receipt_templates: Collection[str] | None = None) -> None:
        """Refuse routes to units or clerks the organisation does not have (`units` maps each
        unit id to its clerks' initials) and, given the tenant's `receipt_templates`, receipt
        templates it does not have."""
        found: list[tuple[str, str]] = []
        clerks = {c for cs in units.values() for c in cs}
        for i, rule in enumerate(self.rules):
            act, at = rule.then, f"rules.{i}.then"
            if receipt_templates is not None and act.receipt_template is not None \
                    and act.receipt_template not in receipt_templates:
                found.append((f"{at}.receipt_template", f"unknown receipt template "
                              f"{act.receipt_template!r} (no receipts/named/"
                              f"{act.receipt_template}.txt.j2 in the tenant directory)"))
            if act.route not in (None, "case_owner") and act.route not in units:
                found.append((f"{at}.route", f"unknown unit {act.route!r} in rule {rule.name!r}"))
            if act.clerk is not None:
                scope = set(units.get(act.route, ())) if act.route else clerks
                if act.clerk not in scope:
                    found.append((f"{at}.clerk", f"unknown clerk {act.clerk!r}"
                                  + (f" in unit {act.route!r}" if act.route else "")))
            for unit in _predicted_units(rule.when):
                if unit not in units:
                    found.append((f"rules.{i}.when.predicted_unit", f"unknown unit {unit!r}"))
        if found:
            raise RuleError(source, found)


def _predicted_units(cond: Condition) -> list[str]:
    nested = (*cond.all, *cond.any, *((cond.not_,) if cond.not_ else ()))
    return [*cond.predicted_unit, *(u for c in nested for u in _predicted_units(c))]


def problems(exc: ValidationError) -> list[tuple[str, str]]:
    """Pydantic's errors as (dotted field path, message) pairs."""
    out = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        out.append((path or "rules", message))
    return out
