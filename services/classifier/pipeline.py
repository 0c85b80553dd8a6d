"""Everything the classifier does to one document: entities, then the model's prediction.

Pure once built: `Classifier.from_tenant` reads the tenant directory (and the model, if any)
at start-up; `classify` does no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from shared.contracts import Entity
from shared.tenant import Tenant

from .attachments import attachment_signs
from .document import Document, LabelledItem
from .entities import Knowledge, extract
from .features import Inputs, UnitIndex, inputs, profile_inputs
from .kle import KlePlan
from .kle_model import KlePredictor
from .knowledge import NOT_RELEVANT, build_knowledge, load_plan, unit_profiles
from .model import ModelPrediction, RoutingModel
from .vocabulary import Vocabulary


@dataclass(frozen=True)
class Classification:
    entities: tuple[Entity, ...]
    personal_data: bool
    prediction: ModelPrediction | None = None
    kle: str | None = None


@dataclass
class TrainedModel:
    """What a model directory holds: the routing model and the KLE predictor."""

    routing: RoutingModel
    kle: KlePredictor | None = None


def unit_index(tenant: Tenant) -> UnitIndex:
    mailboxes = {u.mailbox.lower(): u.id for u in tenant.units.values() if u.mailbox}
    prefixes = sorted(((p, u.id) for u in tenant.units.values() for p in u.kle),
                      key=lambda pu: -len(pu[0]))
    forms = {f.form_id: f.route for f in tenant.forms.values() if f.route in tenant.units}
    return UnitIndex(mailboxes, tuple(prefixes), forms)


class Classifier:
    def __init__(self, knowledge: Knowledge, index: UnitIndex, model: TrainedModel | None = None,
                 ) -> None:
        self.knowledge = knowledge
        self.index = index
        self.model = model

    @classmethod
    def from_tenant(cls, tenant: Tenant, model: TrainedModel | None = None,
                    plan: KlePlan | None = None, cpr_key: bytes | None = None) -> Classifier:
        plan = plan if plan is not None else load_plan(tenant.directory)
        return cls(build_knowledge(tenant, plan, cpr_key), unit_index(tenant), model)

    def entities(self, doc: Document) -> tuple[Entity, ...]:
        text = "\n".join((doc.body, *doc.attachments))
        found = extract(doc.subject, text, sender=doc.sender, sender_name=doc.sender_name,
                        auto_submitted=doc.auto_submitted,
                        knowledge=self.knowledge, headers=doc.headers)
        if doc.form_id:
            found += (Entity(kind="form", value=doc.form_id, source="form"),)
        return found + attachment_signs(doc.attachment_names)

    def inputs(self, doc: Document, entities: tuple[Entity, ...]) -> Inputs:
        return inputs(doc, entities, self.index, self.knowledge.cases,
                      self.knowledge.addressees.words(doc.body))

    def classify(self, doc: Document) -> Classification:
        return self.classify_many([doc])[0]

    def classify_many(self, docs: Sequence[Document]) -> list[Classification]:
        found = [self.entities(d) for d in docs]
        if self.model is None:
            return [Classification(e, any(x.kind == "cpr" for x in e)) for e in found]
        xs = [self.inputs(d, e) for d, e in zip(docs, found, strict=True)]
        predictions = [_misdirected(p, e) for p, e in
                       zip(self.model.routing.predict(xs), found, strict=True)]
        kles: list[str | None] = [None] * len(docs)
        if self.model.kle is not None:
            kles = self.model.kle.predict(xs, [p.label for p in predictions])
        return [Classification(e, any(x.kind == "cpr" for x in e), p, k)
                for e, p, k in zip(found, predictions, kles, strict=True)]

    def training_inputs(self, items: Sequence[LabelledItem]) -> list[Inputs]:
        return [self.inputs(i.document, self.entities(i.document)) for i in items]


def _misdirected(p: ModelPrediction, entities: tuple[Entity, ...]) -> ModelPrediction:
    """A letter addressed to another municipality goes to a person, who sends it on, however
    sure the model is of the unit that would handle its subject here."""
    other = next((e.value for e in entities if e.kind == "other_municipality"), None)
    if other is None or p.label == NOT_RELEVANT:  # spam is spam wherever it is addressed
        return p
    return replace(p, abstain=True, explanation=(f"addressed to {other}", *p.explanation))


def profile_examples(tenant: Tenant, plan: KlePlan | None, vocabulary: Vocabulary | None = None,
                     languages: Mapping[str, Vocabulary] | None = None,
                     ) -> list[tuple[Inputs, str]]:
    profiles = unit_profiles(tenant, plan, vocabulary, languages)
    return ([(profile_inputs(t), p.unit) for p in profiles for t in p.texts]
            + [(profile_inputs(t, foreign=True), p.unit) for p in profiles for t in p.foreign])
