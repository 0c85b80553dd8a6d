"""The router: applies the tenant's routing rules to a classified item."""

from __future__ import annotations

import yaml

from shared import metrics
from shared.contracts import ItemClassified, ItemEvent, ItemRouted, ItemState, RouteOutcome
from shared.db import UnitOfWork
from shared.errors import ConfigurationError, InvalidInput
from shared.runtime import Consumer, Runtime
from shared.tenant import Tenant

from .rules import Decision, Facts, Prediction, RuleSet, decide

__all__ = ["Decision", "Facts", "Prediction", "RuleSet", "decide", "load_rules", "start"]

_STATE = {
    RouteOutcome.ROUTED: ItemState.ROUTED,
    RouteOutcome.TRIAGE: ItemState.TRIAGE,
    RouteOutcome.NOT_RELEVANT: ItemState.NOT_RELEVANT,
}


def load_rules(tenant: Tenant) -> RuleSet:
    path = tenant.rules_path()
    if not path.exists():
        return RuleSet()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path}: invalid YAML: {exc}") from exc
    return RuleSet.parse(data, str(path))


async def start(runtime: Runtime) -> None:
    tenant = runtime.tenant
    ruleset = load_rules(tenant)  # fail at start-up, not on the first item

    async def handle(event: ItemEvent, uow: UnitOfWork) -> None:
        if not isinstance(event, ItemClassified):
            raise InvalidInput(f"router got {type(event).__name__}")
        item = await uow.item(event.item_id)
        if item.state != ItemState.CLASSIFIED:
            return
        prediction = None if event.prediction is None else Prediction(
            event.prediction, event.probability or 0.0, event.abstain, event.explanation,
            event.kle_suggestion)
        facts = Facts(event.entities, mailbox=item.mailbox, channel=item.channel,
                      prediction=prediction)
        d = decide(ruleset, facts, tenant.cases, known_units=tenant.units,
                   fallback_unit=tenant.fallback_unit)
        # The explanation is stored with the decision (item.decision below) as its reasons.
        routed = event.follow(ItemRouted, "router", outcome=d.outcome, unit=d.unit,
                              clerk=d.clerk, case_number=d.case_number, journal=d.journal,
                              kle=d.kle, receipt=d.receipt, reasons=d.reasons)
        item.unit, item.clerk, item.case_number = d.unit, d.clerk, d.case_number
        item.decision = {"outcome": d.outcome.value, "unit": d.unit, "clerk": d.clerk,
                         "case_number": d.case_number, "journal": d.journal.value,
                         "kle": d.kle, "receipt": d.receipt, "reasons": list(d.reasons)}
        uow.transition(item, _STATE[d.outcome], reason="; ".join(d.reasons), event=routed)
        uow.emit(routed)
        metrics.ITEMS_ROUTED.labels(d.outcome.value).inc()

    await runtime.start_consumer(Consumer("router", ("item.classified",), handle))
