"""The classifier: extracts entities from an extracted item (and, later, predicts its unit)."""

from __future__ import annotations

from shared.contracts import ItemClassified, ItemEvent, ItemExtracted, ItemState
from shared.db import UnitOfWork
from shared.errors import InvalidInput
from shared.runtime import Consumer, Runtime

from .entities import extract

__all__ = ["extract", "start"]


async def start(runtime: Runtime) -> None:
    async def handle(event: ItemEvent, uow: UnitOfWork) -> None:
        if not isinstance(event, ItemExtracted):
            raise InvalidInput(f"classifier got {type(event).__name__}")
        item = await uow.item(event.item_id)
        if item.state != ItemState.EXTRACTED:
            return  # already past this stage (a reconciler re-publish raced the original)
        body = (await runtime.blobs.get(event.text)).decode("utf-8", errors="replace")
        for attachment in event.attachments:
            if attachment.text is not None:
                body += "\n" + (await runtime.blobs.get(attachment.text)).decode(
                    "utf-8", errors="replace")
        entities = extract(event.subject, body, sender=event.sender.address,
                           auto_submitted=event.auto_submitted)
        personal = any(e.kind == "cpr" for e in entities)
        item.entities = [e.model_dump() for e in entities if e.kind != "keyword"]
        item.personal_data = personal
        classified = event.follow(ItemClassified, "classifier", entities=entities,
                                  personal_data=personal)
        uow.transition(item, ItemState.CLASSIFIED,
                       reason=f"{len(item.entities)} entities", event=classified)
        uow.emit(classified)

    await runtime.start_consumer(Consumer("classifier", ("item.extracted",), handle))
