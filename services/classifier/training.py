"""Training a model for a tenant from labelled items (pure apart from the tenant it is given)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence

from shared.tenant import Tenant

from . import vocabulary
from .document import LabelledItem
from .features import Inputs, profile_inputs
from .kle import KlePlan
from .kle_model import KlePredictor
from .knowledge import NOT_RELEVANT, load_plan, strip_party
from .model import train
from .pipeline import Classifier, TrainedModel, profile_examples
from .vocabulary import Vocabulary, topics_plan, with_vocabulary


def data_hash(items: Sequence[LabelledItem]) -> str:
    """A hash of what the model learnt from: every item's id, text and label."""
    h = hashlib.sha256()
    for i in sorted(items, key=lambda i: i.id):
        d = i.document
        h.update(repr((i.id, d.subject, d.body, d.attachments, d.sender, d.mailbox, d.channel,
                       d.form_id, i.label, d.attachment_names)).encode())
    return h.hexdigest()


def train_model(tenant: Tenant, items: Sequence[LabelledItem], *, plan: KlePlan | None = None,
                target_precision: float = 0.97, progress: Callable[[str], None] = lambda _: None,
                words: Vocabulary | None = None,
                foreign: Mapping[str, Vocabulary] | None = None,
                ) -> tuple[TrainedModel, dict[str, float]]:
    # The tenant's own kle.json when no plan is given (what `kle import --tenant` wrote).
    plan = plan if plan is not None else load_plan(tenant.directory)
    classifier = Classifier.from_tenant(tenant, plan=plan)
    words = words if words is not None else vocabulary.load(tenant.directory)
    foreign = foreign if foreign is not None else vocabulary.languages(tenant.directory)
    progress("features")
    xs = classifier.training_inputs(items)
    known = set(tenant.units) | {NOT_RELEVANT}
    # Labels outside the tenant's units (the manual-triage unit) are not classes: they teach
    # the calibrator when to abstain.
    abstain = frozenset(i.label.unit for i in items if i.label.unit not in known)
    routing, metrics = train(
        [(x, i.label.unit) for x, i in zip(xs, items, strict=True)],
        profile_examples(tenant, plan, words, foreign) + _not_relevant_profile(),
        groups=[i.group for i in items], target_precision=target_precision,
        abstain_labels=abstain, progress=progress)
    progress("KLE predictor")
    kle = KlePredictor.fit(with_vocabulary(plan, words) if plan is not None
                           else topics_plan(words),
                           [(x, i.label.kle or "") for x, i in zip(xs, items, strict=True)
                            if i.label.kle and len(i.label.kle) == 8],
                           {u.id: u.kle for u in tenant.units.values()},
                           [(strip_party(c.title, c.party), c.kle) for c in tenant.cases.values()
                            if c.kle], char=routing.ranker.char)
    return TrainedModel(routing, kle), metrics


def _not_relevant_profile() -> list[tuple[Inputs, str]]:
    """What mail that needs no case work looks like, in general terms: automatic replies and
    reports, newsletters, marketing and phishing."""

    texts = ("nyhedsbrev tilbud rabat webinar invitation konference tilmeld afmeld gratis kampagne",
             "tilbud pris ekskl moms bestil før sommerpris leverandør produkter uforpligtende",
             "automatisk svar fraværende ferie tilbage igen out of office",
             "bekræft din konto adgangskode udløber klik her verificer login betaling",
             "leveringsrapport kunne ikke leveres undeliverable delivery failed",
             # Search-engine and link offers, advance-fee fraud, paid-directory letters,
             # notifications from social media and platforms, advertising by post.
             "linkbureau backlinks gæsteindlæg artikel placering google synlighed hjemmeside seo",
             "your website seo ranking traffic backlinks marketing offer guest post",
             "business proposal confidential inheritance funds transfer beneficiary million",
             "registrering firmaregister opdatering oplysninger register årlig pris tilmelding",
             "nye kommentarer beskeder notifikationer følgere opslag se mere log ind",
             "reklame katalog produkter tilbud nyhed bestil gratis prøve forhandler")
    return [(profile_inputs(t), NOT_RELEVANT) for t in texts]
