"""The journal: audits each routing decision, files routed items in the ESDH (the built-in
local archive by default), finishes them, and sends the sender a receipt.

Two subscriptions on `item.routed`:
- `journal` (through the runtime's inbox): audit + ESDH + state, one transaction.
- `journal-receipts` (straight on the bus): the receipt, whose exactly-once bookkeeping needs
  its own short transactions around the SMTP call (see receipts.py). It is independent of the
  journalisation: it needs only the item's sender and subject, which ingest stored.
"""

from __future__ import annotations

import contextlib

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from shared import audit
from shared.contracts import ItemEvent, ItemRouted
from shared.db.models import EsdhCase
from shared.errors import InvalidInput
from shared.esdh import Esdh, load_config
from shared.mail import make_sender
from shared.runtime import Consumer, Runtime
from shared.tenant import Tenant

from .archive import LocalArchive
from .filing import Filing
from .getorganized import GetOrganized
from .handler import Journal
from .receipt_text import compose, receipt_due, receipt_message_id
from .receipts import Receipts, RetryPolicy
from .retention import RetentionJob
from .sbsys import Sbsys

__all__ = ["Journal", "LocalArchive", "Receipts", "RetryPolicy", "compose", "make_sender",
           "make_esdh", "receipt_due", "RetentionJob", "receipt_message_id", "seed_cases", "start"]

log = structlog.get_logger(__name__)


async def start(runtime: Runtime) -> None:
    # Another journal process may seed the same cases at the same moment: theirs is as good.
    with contextlib.suppress(IntegrityError):
        await seed_cases(runtime)
    esdh = make_esdh(runtime.tenant)
    journal = Journal(runtime.tenant, LocalArchive, remote=esdh is not None)
    if esdh is not None:
        filing = Filing(runtime.uow, runtime.tenant, esdh, runtime.blobs, runtime.relay)

        async def on_routed_file(event: ItemEvent) -> None:
            if not isinstance(event, ItemRouted):
                raise InvalidInput(f"journal-esdh got {type(event).__name__}")
            await filing.handle(event)

        async def filing_gave_up(event: ItemEvent, exc: BaseException) -> None:
            # The item stays routed; the reconciler re-publishes it and this continues after
            # the last recorded step, until it is failed with the reason.
            log.error("ESDH filing gave up for now", item_id=str(event.item_id),
                      error=f"{type(exc).__name__}: {exc}"[:300])

        await runtime.bus.subscribe("journal-esdh", ("item.routed",), on_routed_file,
                                    filing_gave_up)
    receipts = Receipts(runtime.uow, runtime.tenant, make_sender(runtime.settings),
                        policy=RetryPolicy.from_settings(runtime.settings))
    await runtime.start_consumer(Consumer("journal", ("item.routed",), journal.handle))

    async def on_routed(event: ItemEvent) -> None:
        if not isinstance(event, ItemRouted):
            raise InvalidInput(f"receipts got {type(event).__name__}")
        await receipts.deliver(event)

    async def gave_up(event: ItemEvent, exc: BaseException) -> None:
        # The item itself is fine (the journal consumer handles it); only the receipt is lost.
        log.error("receipt not sent", item_id=str(event.item_id), error=type(exc).__name__)
        async with runtime.uow() as uow:
            await audit.append(uow.session, action="receipt_failed", actor="journal",
                               item_id=event.item_id, details={"error": str(exc)[:300]})
            await uow.commit()

    # Not through start_consumer: its inbox transaction would hold SQLite's write lock across
    # the SMTP call. The Receipt row is this consumer's de-duplication instead. The bus cancels
    # the subscription when the runtime closes it.
    await runtime.bus.subscribe("journal-receipts", ("item.routed",), on_routed, gave_up)
    # Receipts SMTP did not take wait in their rows; retried with back-off from there.
    runtime.spawn(runtime.run_periodic(runtime.settings.receipt_sweep_interval,
                                       receipts.retry_due, "receipt-retry"), "receipt-retry")
    days = runtime.settings.retention_days
    if days is not None:
        # Message content past its retention period (retention.py); several journal
        # processes may run it at once.
        job = RetentionJob(runtime.uow, runtime.blobs, days)
        runtime.spawn(runtime.run_periodic(runtime.settings.retention_interval, job.run,
                                           "retention"), "retention")


async def seed_cases(runtime: Runtime) -> int:
    """Load the tenant's cases.csv into the local archive; returns how many were new."""
    cases = runtime.tenant.cases
    async with runtime.uow() as uow:
        known = set((await uow.session.execute(select(EsdhCase.case_number).where(
            EsdhCase.case_number.in_(list(cases))))).scalars()) if cases else set()
        new = [c for number, c in cases.items() if number not in known]
        for c in new:
            uow.session.add(EsdhCase(case_number=c.case_number, title=c.title, kle=c.kle,
                                     facet=c.facet, unit=c.unit, clerk=c.clerk, party=c.party,
                                     status=c.status, idempotency_key=f"seed:{c.case_number}"))
        await uow.commit()
    log.info("archive seeded", new=len(new), total=len(cases))
    return len(new)


def make_esdh(tenant: Tenant) -> Esdh | None:
    """The tenant's remote ESDH adapter, or None for the built-in local archive."""
    config = load_config(tenant.directory, tenant.municipality.esdh)
    if config.kind == "sbsys" and config.sbsys is not None:
        return Sbsys(config.sbsys)
    if config.kind == "getorganized" and config.getorganized is not None:
        return GetOrganized(config.getorganized)
    return None
