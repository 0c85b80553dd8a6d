"""Journalising in a remote ESDH (SBSYS, GetOrganized): outside any long transaction, step by
step, each step's result recorded under its idempotency key.

The local archive files inside the journal's own transaction (handler.py). A remote ESDH cannot
join that transaction, and holding a database transaction open across HTTP calls would block
other writers, so the `journal-esdh` subscription does it in short transactions, like receipts:
find or create the case, add the document, journalise it — before each step the `esdh_calls`
row for its key is consulted, after it the result is committed — and then moves the item
routed -> journalised -> done and emits ItemJournalised. A retry (bus back-off, the reconciler
re-publishing a stuck item) continues after the last recorded step. ESDH down or slow:
TransientError, retried. The ESDH refusing (unknown or closed case, invalid data): the item goes
to manual triage with the ESDH's reason. A new case gets the rule's KLE and title (titles.py);
a sensitive item's document is marked confidential (`NewDocument.confidential`).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import weakref
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import structlog
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from shared import audit
from shared.blobs import BlobStore
from shared.contracts import ItemJournalised, ItemRouted, ItemState, JournalAction, RouteOutcome
from shared.db import UnitOfWorkFactory
from shared.db.models import EsdhCall, Item
from shared.errors import PermanentError
from shared.esdh import DocumentFile, Esdh, NewCase, NewDocument
from shared.outbox import OutboxRelay
from shared.personal import scrub_cpr
from shared.tenant import Tenant

from .receipt_text import is_auto_reply, receipt_due, receipt_message_id, reference
from .titles import case_title, default_title

log = structlog.get_logger(__name__)


def files_of(item_id: UUID, raw: bytes | None,
             channel: str = "email") -> tuple[DocumentFile, ...]:
    """The original mail as .eml, then each attachment as its own file; a form submission
    as its JSON document (its attachments are filed with it by the forms API's blobs)."""
    if raw is None:
        return ()
    if channel == "form":
        return (DocumentFile(f"{reference(item_id)}.json", "application/json", raw),)
    files = [DocumentFile(f"{reference(item_id)}.eml", "message/rfc822", raw)]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    for n, part in enumerate(msg.iter_attachments(), start=1):
        data = part.get_payload(decode=True)
        if isinstance(data, bytes):
            # A sender's file name, masked here (the adapters spare only our own `PF-` names)
            files.append(DocumentFile(scrub_cpr(part.get_filename() or f"bilag-{n}", "CPR"),
                                      part.get_content_type(), data))
    return tuple(files)


class Filing:
    def __init__(self, uow: UnitOfWorkFactory, tenant: Tenant, esdh: Esdh, blobs: BlobStore,
                 relay: OutboxRelay) -> None:
        self.uow, self.tenant, self.esdh, self.blobs, self.relay = uow, tenant, esdh, blobs, relay
        self._locks: weakref.WeakValueDictionary[UUID, asyncio.Lock] = (
            weakref.WeakValueDictionary())

    async def handle(self, event: ItemRouted) -> None:
        if event.outcome != RouteOutcome.ROUTED or event.journal == JournalAction.NONE:
            return
        lock = self._locks.get(event.item_id)
        if lock is None:
            lock = self._locks[event.item_id] = asyncio.Lock()
        async with lock:
            try:
                await self._file(event)
            except PermanentError as exc:
                await self._refused(event, exc)

    async def _step(self, key: str, run: Callable[[], Awaitable[dict[str, Any]]]
                    ) -> dict[str, Any]:
        async with self.uow() as uow:
            done = await uow.session.get(EsdhCall, key)
            if done is not None:
                return dict(done.result)
        result = await run()
        async with self.uow() as uow:
            dialect = uow.session.get_bind().dialect.name
            insert = pg_insert if dialect == "postgresql" else sqlite_insert
            await uow.session.execute(insert(EsdhCall).values(key=key, result=result)
                                      .on_conflict_do_nothing(index_elements=["key"]))
            await uow.commit()
        return result

    async def _file(self, event: ItemRouted) -> None:
        async with self.uow() as uow:
            item = await uow.item(event.item_id, lock=False)
            if item.state != ItemState.ROUTED:
                return  # journalised before, or moved on
            title = default_title(item.subject, item.channel)
            new_title = case_title(event, item.subject, item.channel)
            raw_sha, item_id, channel = item.raw_sha256, item.id, item.channel
        key = f"item:{item_id}"

        async def case() -> dict[str, Any]:
            found = None
            if event.journal == JournalAction.MATCHED_CASE and event.case_number:
                found = await self.esdh.find_case(event.case_number)
                if found is not None and found.status != "open":
                    raise PermanentError(f"case {found.case_number} is {found.status}")
            if found is None:
                found = await self.esdh.create_case(NewCase(
                    title=new_title, kle=event.kle, unit=event.unit, clerk=event.clerk),
                    idempotency_key=f"{key}:case")
            return {"case_number": found.case_number, "new_case": found.case_number !=
                    event.case_number, "unit": found.unit, "clerk": found.clerk}

        async def document(case_number: str) -> dict[str, Any]:
            raw = await self.blobs.get(raw_sha) if raw_sha else None
            files = files_of(item_id, raw, channel)
            doc = await self.esdh.add_document(case_number, NewDocument(
                title=title, blob_sha256=raw_sha, item_id=item_id, files=files,
                confidential=event.sensitive),
                idempotency_key=f"{key}:document")
            return {"document_id": doc.document_id, "case_number": doc.case_number}

        async def journalise(document_id: str) -> dict[str, Any]:
            await self.esdh.journalise(document_id)
            return {"document_id": document_id}

        c = await self._step(f"{key}:case", case)
        d = await self._step(f"{key}:document", lambda: document(c["case_number"]))
        await self._step(f"{key}:journalised", lambda: journalise(d["document_id"]))
        await self._finish(event, c, d)

    async def _finish(self, event: ItemRouted, c: dict[str, Any], d: dict[str, Any]) -> None:
        async with self.uow() as uow:
            item = await uow.item(event.item_id)
            if item.state != ItemState.ROUTED:
                return
            item.case_number = d["case_number"]
            uow.transition(item, ItemState.JOURNALISED, event=event, producer="journal",
                           reason=f"journalised on case {d['case_number']}")
            uow.transition(item, ItemState.DONE, event=event, producer="journal",
                           reason="journalised")
            due = receipt_due(event, item.sender, auto_reply=is_auto_reply(item.entities))
            uow.emit(event.follow(
                ItemJournalised, "journal", case_number=item.case_number,
                document_id=d["document_id"],
                receipt_message_id=receipt_message_id(item.id, self.tenant.municipality.domain)
                if due else None))
            details = {"document_id": d["document_id"], "new_case": c["new_case"],
                       "journal": event.journal.value, "esdh": self.tenant.municipality.esdh}
            if c["new_case"] and event.journal == JournalAction.MATCHED_CASE:
                details["matched_case_missing"] = event.case_number
            if c["new_case"]:
                details["kle"] = event.kle
            if event.sensitive:
                details["confidential"] = True  # the adapter marked the document so
            await audit.append(uow.session, action="journalised", actor="journal",
                               item_id=item.id, sender=item.sender,
                               unit=c.get("unit") or event.unit,
                               clerk=c.get("clerk") or event.clerk,
                               case_number=d["case_number"], details=details)
            await uow.commit()
        await self.relay.publish(uow.emitted)
        log.info("journalised", item_id=str(event.item_id), case_number=d["case_number"])

    async def _refused(self, event: ItemRouted, exc: PermanentError) -> None:
        reason = f"ESDH refused: {exc}"[:2000]
        async with self.uow() as uow:
            item: Item = await uow.item(event.item_id)
            if item.state != ItemState.ROUTED:
                return
            item.failure_reason = reason
            uow.transition(item, ItemState.TRIAGE, event=event, producer="journal", reason=reason)
            await audit.append(uow.session, action="journal_refused", actor="journal",
                               item_id=item.id, sender=item.sender, unit=event.unit,
                               case_number=event.case_number, details={"reason": reason})
            await uow.commit()
        log.warning("ESDH refused; item sent to triage", item_id=str(event.item_id),
                    reason=reason)
