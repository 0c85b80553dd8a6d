"""The extractor consumer: item.received -> parsed text and attachments as blobs ->
item.extracted. Parsing is in `mime` (pure); this module only loads and stores."""

from __future__ import annotations

import asyncio

import structlog

from shared.blobs import BlobStore
from shared.contracts import AttachmentRef, ItemEvent, ItemExtracted, ItemReceived, ItemState
from shared.db import UnitOfWork
from shared.errors import InvalidInput

from . import mime

log = structlog.get_logger(__name__)
CONSUMER = "extractor"
TEXT_TYPE = "text/plain; charset=utf-8"


class Extractor:
    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs

    async def handle(self, event: ItemEvent, uow: UnitOfWork) -> None:
        if not isinstance(event, ItemReceived):
            raise InvalidInput(f"extractor cannot handle {type(event).__name__}")
        item = await uow.item(event.item_id)
        if item.state != ItemState.RECEIVED.value:
            # a re-published event for an item that has moved on: nothing to do
            log.info("item already past received", state=item.state)
            return
        raw = await self.blobs.get(event.raw)
        parsed = await asyncio.to_thread(mime.parse_message, raw)
        text = await self.blobs.put(parsed.text.encode("utf-8"), TEXT_TYPE)
        attachments = []
        for att in parsed.attachments:
            blob = await self.blobs.put(att.data, att.content_type)
            att_text = (await self.blobs.put(att.text.encode("utf-8"), TEXT_TYPE)
                        if att.text is not None else None)
            attachments.append(AttachmentRef(filename=att.filename, content_type=att.content_type,
                                             blob=blob, text=att_text))
        item.subject = parsed.subject
        item.sender = parsed.sender.address or None
        extracted = event.follow(
            ItemExtracted, CONSUMER, channel=event.channel, mailbox=event.mailbox,
            subject=parsed.subject, sender=parsed.sender, recipients=parsed.recipients,
            auto_submitted=parsed.auto_submitted, text=text, attachments=tuple(attachments))
        uow.transition(item, ItemState.EXTRACTED, event=extracted)
        uow.emit(extracted)
        log.info("item extracted", attachments=len(attachments), text_chars=len(parsed.text),
                 auto_submitted=parsed.auto_submitted, defects=len(parsed.defects))
