"""The router: applies the active routing rules to a classified item.

The active rules are the newest version in the database (`postfordeler rules import`, the
rules API); while the database has none, the tenant's rules.yaml. A change is picked up
without a restart: the version number is checked at most every `rules_refresh` seconds.
"""

from __future__ import annotations

import time

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from shared import metrics
from shared.contracts import ItemClassified, ItemEvent, ItemRouted, ItemState, RouteOutcome
from shared.db import UnitOfWork
from shared.errors import ConfigurationError, InvalidInput
from shared.rules import load_yaml, store
from shared.rules.replay import Organisation, item_facts
from shared.runtime import Consumer, Runtime
from shared.tenant import Tenant

from .rules import Decision, Facts, Prediction, RuleSet, decide

__all__ = ["Decision", "Facts", "Prediction", "RuleSet", "RuleSource", "decide", "load_rules",
           "start"]

log = structlog.get_logger(__name__)

_STATE = {
    RouteOutcome.ROUTED: ItemState.ROUTED,
    RouteOutcome.TRIAGE: ItemState.TRIAGE,
    RouteOutcome.NOT_RELEVANT: ItemState.NOT_RELEVANT,
}


def load_rules(tenant: Tenant) -> RuleSet:
    """The tenant's rules.yaml (the rules used while the database holds none)."""
    return load_yaml(tenant.rules_path())


class RuleSource:
    """The active rule set, cached for `refresh` seconds between version checks."""

    def __init__(self, fallback: RuleSet, refresh: float) -> None:
        self.fallback = fallback
        self.refresh = refresh
        self.version: int | None = None
        self.ruleset = fallback
        self._checked = float("-inf")

    async def get(self, session: AsyncSession) -> tuple[int | None, RuleSet]:
        now = time.monotonic()
        if now - self._checked < self.refresh:
            return self.version, self.ruleset
        latest = await store.latest_version(session)
        if latest is None:
            self.version, self.ruleset = None, self.fallback
        elif latest != self.version:
            try:
                found = await store.active(session)
            except ConfigurationError as exc:
                # Saved versions were validated; one that no longer parses (an older release's
                # format) must not stop routing: keep the last good set and say so.
                log.error("active rule set refused; keeping the previous one", error=str(exc))
                found = None
            if found is not None:
                self.version, self.ruleset = found
                log.info("rule set loaded", version=self.version)
        self._checked = now
        return self.version, self.ruleset


async def start(runtime: Runtime) -> None:
    tenant = runtime.tenant
    settings = runtime.settings
    source = RuleSource(load_rules(tenant), settings.rules_refresh)  # yaml errors fail start-up
    org = Organisation.of(tenant, settings.rule_regex_timeout)

    async def handle(event: ItemEvent, uow: UnitOfWork) -> None:
        if not isinstance(event, ItemClassified):
            raise InvalidInput(f"router got {type(event).__name__}")
        item = await uow.item(event.item_id)
        if item.state != ItemState.CLASSIFIED:
            return
        version, ruleset = await source.get(uow.session)
        facts = await item_facts(uow.session, runtime.blobs, item, classified=event,
                                 with_text=ruleset.needs_text)
        assert facts is not None  # the event itself is given
        d = org.decide(ruleset, facts)
        # The explanation is stored with the decision (item.decision below) as its reasons.
        routed = event.follow(ItemRouted, "router", outcome=d.outcome, unit=d.unit,
                              clerk=d.clerk, case_number=d.case_number, journal=d.journal,
                              kle=d.kle, receipt=d.receipt, reasons=d.reasons, rules=d.fired,
                              rule_version=version, receipt_template=d.receipt_template,
                              case_title=d.case_title, sensitive=d.sensitive)
        item.unit, item.clerk, item.case_number = d.unit, d.clerk, d.case_number
        item.decision = {**d.summary(), "rule_version": version}
        uow.transition(item, _STATE[d.outcome], reason="; ".join(d.reasons), event=routed)
        uow.emit(routed)
        metrics.ITEMS_ROUTED.labels(d.outcome.value).inc()

    await runtime.start_consumer(Consumer("router", ("item.classified",), handle))
