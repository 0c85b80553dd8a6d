"""Applying a rule set to an item's facts. Pure: no I/O.

Rules run in priority order. The first enabled matching rule with a destination that stops
decides; a rule with `stop: false` adds its marks (sensitive, receipt template) and, if it has a
destination, proposes it until a later rule decides otherwise. When no rule decides, the routing
model's prediction decides if its calibrated probability clears its abstain threshold;
otherwise the item goes to manual triage. Every decision says which rules fired and why, in
words an administrator understands: "parkering: rule 'Nummerplade' matched plate AB12345;
model agreed 0.94".
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import regex

from shared.contracts import Entity, JournalAction, RouteOutcome
from shared.errors import ConfigurationError
from shared.personal import scrub_cpr
from shared.tenant import Case
from shared.text import normalise_keyword

from .model import REGEX_FLAGS, Condition, Rule, RuleSet

# How an entity kind is named in an explanation. CPR numbers are never shown, masked or not.
WORDS = {"licence_plate": "plate", "case_number": "case", "cvr": "CVR", "kle": "KLE",
         "cpr": "CPR number",
         "sender_kind": "sender", "form": "form"}
HIDDEN = frozenset({"cpr"})


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
    """What the rules look at, gathered from the item and its entities. `text` (subject, body
    and attachment text) is loaded only when a rule set has phrase or regex conditions."""

    entities: tuple[Entity, ...]
    mailbox: str = ""
    channel: str = "email"
    prediction: Prediction | None = None
    sender: str = ""
    subject: str = ""
    text: str | None = None

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
    fired: tuple[str, ...] = ()  # names of the rules that matched and acted
    sensitive: bool = False
    receipt_template: str | None = None
    case_title: str | None = None

    def summary(self) -> dict[str, Any]:
        """The decision as stored on the item and compared by the dry run."""
        return {"outcome": self.outcome.value, "unit": self.unit, "clerk": self.clerk,
                "case_number": self.case_number, "journal": self.journal.value,
                "kle": self.kle, "receipt": self.receipt, "reasons": list(self.reasons),
                "rules": list(self.fired), "sensitive": self.sensitive,
                "receipt_template": self.receipt_template, "case_title": self.case_title}


@dataclass
class _Ctx:
    facts: Facts
    matched: Case | None
    regex_timeout: float
    kws: set[str] = field(default_factory=set)


@lru_cache(maxsize=512)
def _compiled(pattern: str) -> Any:
    return regex.compile(pattern, REGEX_FLAGS)


def _squash(text: str) -> str:
    return " ".join(text.lower().split())


def _test(cond: Condition, ctx: _Ctx) -> tuple[bool, list[str]]:
    """Whether `cond` holds, and why."""
    facts, why, checks = ctx.facts, [], []
    if cond.entity is not None:
        hit = [v for v in facts.values(cond.entity)
               if (cond.equals is None or v.lower() == cond.equals.lower())
               and (cond.prefix is None or v.startswith(cond.prefix))]
        checks.append(bool(hit))
        if hit:
            word = WORDS.get(cond.entity, cond.entity.replace("_", " "))
            why.append(f"a {word}" if cond.entity in HIDDEN else f"{word} {hit[0]}")
    if cond.case_matched is not None:
        checks.append((ctx.matched is not None) == cond.case_matched)
        if ctx.matched is not None and cond.case_matched:
            why.append(f"case {ctx.matched.case_number}")
    if cond.keywords_any:
        hit = [k for k in cond.keywords_any if normalise_keyword(k) in ctx.kws]
        checks.append(bool(hit))
        if hit:
            why.append("keyword " + ", ".join(f"'{k}'" for k in hit))
    if cond.keywords_all:
        ok = all(normalise_keyword(k) in ctx.kws for k in cond.keywords_all)
        checks.append(ok)
        if ok:
            why.append("keywords " + ", ".join(f"'{k}'" for k in cond.keywords_all))
    if cond.phrase:
        text = _squash(f"{facts.subject}\n{facts.text or ''}")
        hit = [p for p in cond.phrase if _squash(p) in text]
        checks.append(bool(hit))
        if hit:
            why.append(f"phrase '{hit[0]}'")
    if cond.regex is not None:
        checks.append(_regex(cond.regex, ctx, why))
    sender = facts.sender.lower()
    for name, actual in (("sender", [sender] if sender else []),
                         ("sender_domain", facts.values("sender_domain")),
                         ("mailbox", [facts.mailbox]), ("channel", [facts.channel]),
                         ("form", facts.values("form"))):
        wanted: tuple[str, ...] = getattr(cond, name)
        if wanted:
            hit = [a for a in actual if a.lower() in {w.lower() for w in wanted}]
            checks.append(bool(hit))
            if hit:
                why.append(f"{name.replace('_', ' ')} {hit[0]}")
    if cond.predicted_unit:
        p = facts.prediction
        ok = (p is not None and p.label in cond.predicted_unit
              and p.probability >= (cond.min_probability or 0.0))
        checks.append(ok)
        if ok and p is not None:
            why.append(f"the model's {p.label} {p.probability:.2f}")
    if cond.auto_reply is not None:
        is_auto = bool(facts.values("auto_reply"))
        checks.append(is_auto == cond.auto_reply)
        why.append("an auto-reply" if is_auto else "not an auto-reply")
    if cond.all:
        results = [_test(c, ctx) for c in cond.all]
        checks.append(all(ok for ok, _ in results))
        why += [w for _, ws in results for w in ws]
    if cond.any:
        results = [_test(c, ctx) for c in cond.any]
        checks.append(any(ok for ok, _ in results))
        why += [w for ok, ws in results if ok for w in ws]
    if cond.not_ is not None:
        ok, _ = _test(cond.not_, ctx)
        checks.append(not ok)
    return all(checks), why


def _regex(pattern: str, ctx: _Ctx, why: list[str]) -> bool:
    """Run with a timeout: a pattern that backtracks catastrophically on this text does not
    match (and says so) instead of holding up the router."""
    text = f"{ctx.facts.subject}\n{ctx.facts.text or ''}"
    try:
        found = _compiled(pattern).search(text, timeout=ctx.regex_timeout)
    except TimeoutError:
        why.append(f"pattern /{pattern}/ timed out (treated as no match)")
        return False
    if found:  # the matched text is not shown: it may be personal data
        why.append(f"pattern /{pattern}/")
    return found is not None


_TITLE_VALUE = 120


def _title(template: str, facts: Facts, unit: str | None, matched: Case | None,
           kle: str | None) -> str:
    first = {k: (facts.values(kind) or [""])[0] for k, kind in (
        ("plate", "licence_plate"), ("form", "form"), ("cvr", "cvr"))}
    values = {**first, "subject": facts.subject, "sender": facts.sender, "unit": unit or "",
              "case": matched.case_number if matched else "", "kle": kle or ""}
    # Each value on one line, without CPR numbers, and short enough that a long subject
    # cannot push the placeholders after it out of the title.
    safe = {k: scrub_cpr(" ".join(str(v).split()))[:_TITLE_VALUE] for k, v in values.items()}
    return string.Formatter().vformat(template, (), safe).strip()[:300]


def _agreement(unit: str | None, p: Prediction | None) -> str:
    if p is None or unit is None:
        return ""
    if p.label == unit:
        return f"; model agreed {p.probability:.2f}"
    return f"; model said {p.label} {p.probability:.2f}"


def _apply(rule: Rule, why: list[str], ctx: _Ctx, units: set[str],
           clerks: Mapping[str, str]) -> Decision | None:
    """What `rule` decides, or None when it cannot (case_owner without a known case)."""
    act, matched, p = rule.then, ctx.matched, ctx.facts.prediction
    said = f"rule '{rule.name}' matched " + (" and ".join(why) or "")
    if act.not_relevant:
        return Decision(RouteOutcome.NOT_RELEVANT, None, reasons=(f"not relevant: {said}",),
                        fired=(rule.name,))
    unit, clerk = act.route, act.clerk
    if unit == "case_owner":
        if matched is None or matched.unit not in units:
            return None  # the rule needs a known case; let a later rule decide
        unit, clerk = matched.unit, clerk or matched.clerk
        said += f"; case {matched.case_number} is owned by {unit}/{clerk}"
    elif unit is None and clerk is not None:
        unit = clerks.get(clerk)
    if unit not in units:
        raise ConfigurationError(f"rule '{rule.name}' routes to unknown unit "
                                 f"{unit or act.clerk!r}")
    journal = act.journal
    if journal is JournalAction.MATCHED_CASE and matched is None:
        journal = JournalAction.NEW_CASE
    kle = act.kle or (matched.kle if matched else None)
    title = (_title(act.case_title, ctx.facts, unit, matched, kle)
             if act.case_title and journal is JournalAction.NEW_CASE else None)
    who = f"{unit}/{clerk}" if clerk else unit
    return Decision(RouteOutcome.ROUTED, unit, clerk, matched.case_number if matched else None,
                    journal, kle, act.receipt, (f"{who}: {said}{_agreement(unit, p)}",),
                    (rule.name,), act.sensitive, act.receipt_template, title)


def decide(ruleset: RuleSet, facts: Facts, cases: Mapping[str, Case], *,
           known_units: Iterable[str], fallback_unit: str,
           not_relevant: str = "ikke-relevant", clerks: Mapping[str, str] | None = None,
           regex_timeout: float = 0.05) -> Decision:
    """Decide where an item goes. `clerks` maps clerk initials to their unit (for rules that
    route to a clerk)."""
    units = set(known_units)
    matched = next((cases[n] for n in facts.values("case_number") if n in cases), None)
    ctx = _Ctx(facts, matched, regex_timeout,
               {normalise_keyword(v) for v in facts.values("keyword")})
    proposed: Decision | None = None
    marks: list[tuple[Rule, str]] = []
    for rule in ruleset.rules:
        if not rule.enabled:
            continue
        ok, why = _test(rule.when, ctx)
        if not ok:
            continue
        if rule.then.destination:
            decided = _apply(rule, why, ctx, units, clerks or {})
            if decided is None:
                continue
            if rule.stop:
                return _marked(decided, marks)
            proposed = decided
        else:
            marks.append((rule, " and ".join(why)))
    if proposed is not None:
        return _marked(proposed, marks)
    return _marked(_by_model(ruleset, facts, matched, units, fallback_unit, not_relevant),
                   marks)


def _marked(d: Decision, marks: list[tuple[Rule, str]]) -> Decision:
    """Add what the non-stopping rules that matched said (sensitive, receipt template)."""
    if not marks:
        return d
    sensitive, template, reasons = d.sensitive, d.receipt_template, list(d.reasons)
    for rule, why in marks:
        did = [w for w, on in (("marked sensitive", rule.then.sensitive),
                               (f"receipt template {rule.then.receipt_template}",
                                bool(rule.then.receipt_template))) if on]
        reasons.append(f"{', '.join(did) or 'noted'}: rule '{rule.name}' matched {why}".strip())
        sensitive = sensitive or rule.then.sensitive
        template = template or rule.then.receipt_template
    fired = tuple(r.name for r, _ in marks if r.name not in d.fired) + d.fired
    return replace(d, sensitive=sensitive, reasons=tuple(reasons), fired=fired,
                   receipt_template=template if d.receipt else None)


# Signs of mail no person wrote or that sells or phishes (services/classifier/signals.py,
# attachments.py). The model may still route such an item (an authority's automatic notice is
# work), but it does not answer it: a receipt to spam confirms the address, and one to an
# automatic reply can start a loop. Rules that route such mail decide their own receipts.
_UNANSWERED = frozenset({"commercial", "newsletter", "auto_reply", "delivery_report",
                         "read_receipt", "disguised_attachment"})


def _answerable(facts: Facts) -> bool:
    return not any(e.kind in _UNANSWERED or (e.kind == "sender_kind" and e.value == "lookalike")
                   for e in facts.entities)


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
        receipt = ruleset.model.receipt and _answerable(facts)
        quiet = ("; no receipt: automatic or commercial mail"
                 if ruleset.model.receipt and not receipt else "")
        return Decision(RouteOutcome.ROUTED, p.label, None, case_number, journal, p.kle,
                        receipt, (said + why + quiet,))
    return Decision(RouteOutcome.TRIAGE, fallback_unit,
                    receipt=ruleset.fallback_receipt and _answerable(facts), reasons=(reason,))
