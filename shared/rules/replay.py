"""Facts for the rules from what is stored, and the dry run that compares two rule sets.

An item's facts are rebuilt from its row (mailbox, channel, sender, subject) and the events the
pipeline kept in the outbox: ItemClassified (every entity, keywords included, and the model's
prediction) and ItemExtracted (the text blob and attachment texts, read only when a rule set
tests phrases or regular expressions). Items whose events the retention job deleted cannot be
replayed and are counted as skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.blobs import BlobStore
from shared.contracts import Entity, ItemClassified, ItemExtracted, ItemState
from shared.db.events import latest_event
from shared.db.models import Item
from shared.tenant import Case, Tenant
from shared.text import keywords

from .engine import Decision, Facts, Prediction, decide
from .model import RuleSet

COMPARED = ("outcome", "unit", "clerk", "case_number", "journal", "kle", "receipt",
            "sensitive", "receipt_template")


@dataclass(frozen=True)
class Organisation:
    """What `decide` needs to know about the tenant."""

    cases: Mapping[str, Case]
    units: frozenset[str]
    fallback_unit: str
    clerks: Mapping[str, str] = field(default_factory=dict)  # initials -> unit
    regex_timeout: float = 0.05

    @classmethod
    def of(cls, tenant: Tenant, regex_timeout: float = 0.05) -> Organisation:
        return cls(tenant.cases, frozenset(tenant.units), tenant.fallback_unit,
                   {c.initials: u.id for u in tenant.units.values() for c in u.clerks},
                   regex_timeout)

    def clerks_by_unit(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {u: [] for u in self.units}
        for initials, unit in self.clerks.items():
            out.setdefault(unit, []).append(initials)
        return out

    def decide(self, ruleset: RuleSet, facts: Facts) -> Decision:
        return decide(ruleset, facts, self.cases, known_units=self.units,
                      fallback_unit=self.fallback_unit, clerks=self.clerks,
                      regex_timeout=self.regex_timeout)


def prediction_of(event: ItemClassified) -> Prediction | None:
    if event.prediction is None:
        return None
    return Prediction(event.prediction, event.probability or 0.0, event.abstain,
                      event.explanation, event.kle_suggestion)


async def item_text(session: AsyncSession, blobs: BlobStore, item_id: uuid.UUID) -> str | None:
    """The body and attachment text the extractor produced, or None when it is gone."""
    extracted = await latest_event(session, item_id, ItemExtracted)
    if extracted is None:
        return None
    refs = [extracted.text, *(a.text for a in extracted.attachments if a.text is not None)]
    try:
        parts = [(await blobs.get(ref)).decode("utf-8", errors="replace") for ref in refs]
    except (OSError, KeyError, LookupError):
        return None  # deleted by retention: phrase and regex tests see no text
    return "\n".join(parts)


async def item_facts(session: AsyncSession, blobs: BlobStore | None, item: Item, *,
                     with_text: bool, classified: ItemClassified | None = None,
                     ) -> Facts | None:
    """The facts the router saw for `item` (None when its ItemClassified event is gone)."""
    if classified is None:
        event = await latest_event(session, item.id, ItemClassified)
        if event is None:
            return None
        classified = event
    text = (await item_text(session, blobs, item.id)
            if with_text and blobs is not None else None)
    return Facts(classified.entities, mailbox=item.mailbox, channel=item.channel,
                 prediction=prediction_of(classified), sender=item.sender or "",
                 subject=item.subject or "", text=text)


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class LabelledSender(_Loose):
    name: str | None = None
    address: str | None = None


class LabelledAttachment(_Loose):
    filename: str | None = None
    text: str | None = Field(None, max_length=1_000_000)


class LabelledForm(_Loose):
    form_id: str | None = None


class LabelledLabel(_Loose):
    unit: str | None = None


class LabelledPrediction(_Loose):
    label: str
    probability: float = Field(0.0, ge=0.0, le=1.0)
    abstain: bool = False


class LabelledItem(_Loose):
    """One item of a labelled file (the Eksempelby item format; unknown fields ignored), with
    optional `entities` and `prediction` as the classifier would give them."""

    id: str | int | None = None
    channel: str = "email"
    mailbox: str = ""
    sender: LabelledSender | None = Field(None, alias="from")
    subject: str | None = Field(None, max_length=10_000)
    body: str | None = Field(None, max_length=1_000_000)
    attachments: list[LabelledAttachment] = Field(default_factory=list, max_length=100)
    form: LabelledForm | None = None
    label: LabelledLabel | None = None
    entities: list[Entity] = Field(default_factory=list, max_length=5000)
    prediction: LabelledPrediction | None = None


def labelled_facts(line: LabelledItem) -> Facts:
    """Facts for one labelled item. What needs no classifier is derived here: sender, domain,
    mailbox, channel, form, text, and keyword stems (the normalisation rule keywords are
    matched with). Plates, CPR, CVR, case and KLE numbers and the model's prediction come from
    the line's `entities` and `prediction` (`postfordeler rules simulate` fills them in with
    the classifier)."""
    sender = ((line.sender.address if line.sender else None) or "").lower()
    body = "\n".join([line.body or "", *(a.text or "" for a in line.attachments)])
    subject = line.subject or ""
    found: list[Entity] = list(line.entities)
    if "@" in sender:
        found.append(Entity(kind="sender_domain", value=sender.rsplit("@", 1)[1]))
    if line.form is not None and line.form.form_id:
        found.append(Entity(kind="form", value=line.form.form_id, source="form"))
    if not any(e.kind == "keyword" for e in line.entities):
        found += (Entity(kind="keyword", value=k) for k in sorted(keywords(f"{subject}\n{body}")))
    p = line.prediction
    prediction = Prediction(p.label, p.probability, p.abstain) if p is not None else None
    return Facts(tuple(found), mailbox=line.mailbox, channel=line.channel,
                 prediction=prediction, sender=sender, subject=subject, text=body)


def changes(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    """The decision fields that differ (all of them when there was no old decision)."""
    if old is None:
        return [k for k in COMPARED if new.get(k) not in (None, False)]
    return [k for k in COMPARED if (old.get(k) or None) != (new.get(k) or None)]


@dataclass(frozen=True)
class Replayed:
    ref: str  # item id, or the labelled item's id
    old: dict[str, Any] | None
    new: dict[str, Any]
    changed: tuple[str, ...]
    expected: str | None = None  # the label's unit, for labelled files


async def replay_recent(session: AsyncSession, blobs: BlobStore | None, proposed: RuleSet,
                        org: Organisation, *, last: int) -> tuple[list[Replayed], int]:
    """The last `last` routed items under `proposed`, against the decision they got. Returns
    the results and how many items could not be replayed (their events were deleted)."""
    decided = [s.value for s in (ItemState.ROUTED, ItemState.JOURNALISED, ItemState.DONE,
                                 ItemState.TRIAGE, ItemState.NOT_RELEVANT)]
    items = (await session.execute(
        select(Item).where(Item.state.in_(decided)).order_by(Item.created_at.desc())
        .limit(last))).scalars().all()
    out, skipped = [], 0
    for item in items:
        if not item.decision or "outcome" not in item.decision:
            skipped += 1  # stopped before routing (a loop caught at ingest)
            continue
        facts = await item_facts(session, blobs, item, with_text=proposed.needs_text)
        if facts is None:
            skipped += 1
            continue
        new = org.decide(proposed, facts).summary()
        old = dict(item.decision or {})
        out.append(Replayed(str(item.id), old, new, tuple(changes(old, new))))
    return out, skipped


def replay_labelled(lines: Iterable[LabelledItem], current: RuleSet, proposed: RuleSet,
                    org: Organisation) -> list[Replayed]:
    """Each labelled item under the current and the proposed rule set."""
    out = []
    for i, line in enumerate(lines):
        facts = labelled_facts(line)
        old = org.decide(current, facts).summary()
        new = org.decide(proposed, facts).summary()
        label = line.label.unit if line.label is not None else None
        out.append(Replayed(str(line.id if line.id is not None else i), old, new,
                            tuple(changes(old, new)), label))
    return out


def summarise(results: Sequence[Replayed]) -> dict[str, int]:
    counts = {"items": len(results), "changed": sum(1 for r in results if r.changed)}
    labelled = [r for r in results if r.expected is not None]
    if labelled:
        def right(d: Mapping[str, Any] | None, want: str | None) -> bool:
            if d is None:
                return False
            got = d.get("unit") if d.get("outcome") != "not_relevant" else "ikke-relevant"
            return got == want
        counts["right_before"] = sum(1 for r in labelled if right(r.old, r.expected))
        counts["right_after"] = sum(1 for r in labelled if right(r.new, r.expected))
    return counts
