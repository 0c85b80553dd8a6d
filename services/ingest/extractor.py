"""The extractor consumer: item.received -> parsed text and attachments as blobs ->
item.extracted, for mails, scans and form submissions with attachments. Parsing and OCR run
in worker processes (extraction.py); this module only loads, stores and records. An input that
cannot be read (a mail that is not one, a scan that breaks a limit) fails the item here with
the reason, in the same transaction."""

from __future__ import annotations

import json

import structlog

from shared.blobs import BlobStore
from shared.contracts import (
    Address,
    AttachmentRef,
    BlobRef,
    Channel,
    ItemEvent,
    ItemExtracted,
    ItemFailed,
    ItemReceived,
    ItemState,
    PageText,
)
from shared.db import UnitOfWork
from shared.errors import InvalidInput

from .expand import Extraction, Page, join_pages
from .extraction import ExtractionService

log = structlog.get_logger(__name__)
CONSUMER = "extractor"
TEXT_TYPE = "text/plain; charset=utf-8"


class Extractor:
    def __init__(self, blobs: BlobStore, service: ExtractionService | None = None) -> None:
        self.blobs = blobs
        self.service = service or ExtractionService()

    async def handle(self, event: ItemEvent, uow: UnitOfWork) -> None:
        if not isinstance(event, ItemReceived):
            raise InvalidInput(f"extractor cannot handle {type(event).__name__}")
        item = await uow.item(event.item_id)
        if item.state != ItemState.RECEIVED.value:
            # a re-published event for an item that has moved on: nothing to do
            log.info("item already past received", state=item.state)
            return
        raw = await self.blobs.get(event.raw)
        try:
            if event.channel == Channel.SCAN:
                out = await self.service.document(raw, event.source_ref)
            elif event.channel == Channel.FORM:
                out = await self._form(raw)
            else:
                out = await self.service.mail(raw)
        except InvalidInput as exc:
            reason = str(exc)[:2000]
            item.failure_reason = reason
            failed = event.follow(ItemFailed, CONSUMER, stage=CONSUMER, reason=reason)
            uow.transition(item, ItemState.FAILED, reason=reason, event=failed)
            uow.emit(failed)
            log.warning("item not extractable", reason=reason)
            return
        extracted = await self._store(event, out)
        item.subject = extracted.subject
        item.sender = extracted.sender.address or None
        uow.transition(item, ItemState.EXTRACTED, event=extracted)
        uow.emit(extracted)
        log.info("item extracted", attachments=len(extracted.attachments),
                 pages=len(extracted.pages), problems=sum(1 for p in out.parts if p.problem),
                 auto_submitted=out.auto_submitted, defects=len(out.defects))

    async def _form(self, raw: bytes) -> Extraction:
        """A form submission with attachments (the API extracts one without any itself): the
        fields' text the API rendered, and the attachments read like a mail's."""
        try:
            doc = json.loads(raw)
            refs = [AttachmentRef.model_validate(a) for a in doc["attachments"]]
            text_ref = BlobRef.model_validate(doc["text"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"not a stored form submission ({type(exc).__name__})") from None
        files = [(a.filename, a.content_type, await self.blobs.get(a.blob)) for a in refs]
        out = await self.service.files(files)
        out.subject = str(doc.get("title") or "")
        out.sender = Address(address=str(doc.get("sender") or ""))
        out.text = (await self.blobs.get(text_ref)).decode("utf-8")
        return out

    async def _store(self, event: ItemReceived, out: Extraction) -> ItemExtracted:
        parts, text = out.parts, out.text
        pages: tuple[PageText, ...] = ()
        if event.channel == Channel.SCAN:
            # The scanned document is the item itself, not an attachment of it.
            doc, parts = out.parts[0], []
            pages, text = page_texts(doc.pages), doc.text or join_pages(doc.pages)
        attachments = []
        for part in parts:
            blob = await self.blobs.put(part.data, part.content_type)
            text_blob = (await self.blobs.put(part.text.encode("utf-8"), TEXT_TYPE)
                         if part.text is not None else None)
            attachments.append(AttachmentRef(
                filename=part.filename, content_type=part.content_type, blob=blob,
                text=text_blob, parent=part.parent, pages=page_texts(part.pages),
                problem=part.problem))
        text_ref = await self.blobs.put(text.encode("utf-8"), TEXT_TYPE)
        return event.follow(
            ItemExtracted, CONSUMER, channel=event.channel, mailbox=event.mailbox,
            subject=out.subject, sender=out.sender, recipients=out.recipients,
            auto_submitted=out.auto_submitted, text=text_ref, attachments=tuple(attachments),
            pages=pages)


def page_texts(pages: list[Page]) -> tuple[PageText, ...]:
    return tuple(PageText(page=p.number, source="ocr" if p.source == "ocr" else "text_layer",
                          chars=len(p.text), confidence=p.confidence, orientation=p.orientation,
                          problem=p.problem)
                 for p in sorted(pages, key=lambda p: p.number))
