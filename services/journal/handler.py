"""The journal's decision handling: audit the router's decision and, for routed items, file
the item in the ESDH and finish it (routed -> journalised -> done), all in the handler's one
transaction. Case and document creation carry idempotency keys derived from the item id.

What the rule said to do with it (`ItemRouted.journal`): `none` files nothing (the item is done
at once); `matched_case` files on the case the classifier matched, and on a new case when the
ESDH does not have it (the router already turns `matched_case` without a match into `new_case`);
`new_case` creates a case with the rule's KLE and title (titles.py). A remote ESDH files in
filing.py by the same rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from shared import audit
from shared.contracts import (
    ItemEvent,
    ItemJournalised,
    ItemRouted,
    ItemState,
    JournalAction,
    RouteOutcome,
)
from shared.db import UnitOfWork
from shared.db.models import Item
from shared.errors import InvalidInput
from shared.esdh import DocumentRef, Esdh, NewCase, NewDocument
from shared.tenant import Tenant

from .receipt_text import is_auto_reply, receipt_due, receipt_message_id
from .titles import case_title, default_title

log = structlog.get_logger(__name__)

EsdhFactory = Callable[[AsyncSession], Esdh]


class Journal:
    def __init__(self, tenant: Tenant, esdh: EsdhFactory, *, remote: bool = False) -> None:
        self.tenant = tenant
        self.esdh = esdh
        # A remote ESDH files outside this transaction (filing.py); here only the audit.
        self.remote = remote

    async def handle(self, event: ItemEvent, uow: UnitOfWork) -> None:
        if not isinstance(event, ItemRouted):
            raise InvalidInput(f"journal got {type(event).__name__}")
        item = await uow.item(event.item_id)
        # Audit entries are appended last: appending locks the chain's single head row until
        # commit, and every other journal transaction waits for it.
        entries: list[dict[str, Any]] = []
        action = event.outcome.value  # "routed", "triage" or "not_relevant"
        if not await audit.recorded(uow.session, item.id, action):
            entries.append(dict(action=action, actor="router", unit=event.unit,
                                clerk=event.clerk, case_number=event.case_number,
                                details=_decision(event)))
        remote_filing = self.remote and event.journal != JournalAction.NONE
        if event.outcome == RouteOutcome.ROUTED and item.state == ItemState.ROUTED \
                and not remote_filing:
            entries += await self._finish(event, item, uow)
        # triage/not_relevant are final already; done/failed means handled before
        for entry in entries:
            await audit.append(uow.session, item_id=item.id, sender=item.sender, **entry)

    async def _finish(self, event: ItemRouted, item: Item,
                      uow: UnitOfWork) -> list[dict[str, Any]]:
        document, entries = None, []
        if event.journal != JournalAction.NONE:
            document, entry = await self._file(event, item, uow)
            entries.append(entry)
            item.case_number = document.case_number
            uow.transition(item, ItemState.JOURNALISED, event=event, producer="journal",
                           reason=f"journalised on case {document.case_number}")
        uow.transition(item, ItemState.DONE, event=event, producer="journal",
                       reason="journalised" if document else "routed without journalisation")
        due = receipt_due(event, item.sender, auto_reply=is_auto_reply(item.entities))
        uow.emit(event.follow(
            ItemJournalised, "journal", case_number=item.case_number,
            document_id=document.document_id if document else None,
            receipt_message_id=receipt_message_id(item.id, self.tenant.municipality.domain)
            if due else None))
        return entries

    async def _file(self, event: ItemRouted, item: Item,
                    uow: UnitOfWork) -> tuple[DocumentRef, dict[str, Any]]:
        esdh = self.esdh(uow.session)
        key = f"item:{item.id}"
        case = None
        if event.journal == JournalAction.MATCHED_CASE and event.case_number:
            case = await esdh.find_case(event.case_number)
        created = case is None
        if case is None:
            case = await esdh.create_case(NewCase(
                title=case_title(event, item.subject, item.channel), kle=event.kle,
                unit=event.unit, clerk=event.clerk, party=item.sender),
                idempotency_key=f"{key}:case")
        # The local archive has no confidentiality column: the item's decision carries the
        # mark, and the API shows the item (and so its document) to the unit and auditors only.
        doc = await esdh.add_document(case.case_number, NewDocument(
            title=default_title(item.subject, item.channel), blob_sha256=item.raw_sha256,
            item_id=item.id, confidential=event.sensitive), idempotency_key=f"{key}:document")
        await esdh.journalise(doc.document_id)
        details: dict[str, Any] = {"document_id": doc.document_id, "new_case": created,
                                   "journal": event.journal.value}
        if created:
            details["kle"] = event.kle
        if event.sensitive:
            details["confidential"] = True
        if created and event.journal == JournalAction.MATCHED_CASE:
            details["matched_case_missing"] = event.case_number
        log.info("journalised", case_number=doc.case_number, new_case=created)
        return doc, dict(action="journalised", actor="journal", unit=case.unit or event.unit,
                         clerk=case.clerk or event.clerk, case_number=doc.case_number,
                         details=details)


def _decision(event: ItemRouted) -> dict[str, Any]:
    # Decision facts only: reasons name rules and entity kinds, never body text.
    facts: dict[str, Any] = {
        "outcome": event.outcome.value, "journal": event.journal.value, "kle": event.kle,
        "receipt": event.receipt, "reasons": list(event.reasons),
        "event_id": str(event.message_id)}
    # The rule's marks, for the auditor who asks why a receipt or forward looked as it did.
    if event.sensitive:
        facts["sensitive"] = True
    if event.receipt_template:
        facts["receipt_template"] = event.receipt_template
    return facts
