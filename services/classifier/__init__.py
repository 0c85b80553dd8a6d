"""The classifier: extracts entities from an extracted item and, when a routing model is
configured (POSTFORDELER_MODEL_DIR), predicts its unit with a calibrated probability."""

from __future__ import annotations

import asyncio

from shared.contracts import ItemClassified, ItemEvent, ItemExtracted, ItemState
from shared.db import UnitOfWork
from shared.errors import InvalidInput
from shared.runtime import Consumer, Runtime

from .attachments import own_files
from .batching import Batcher
from .document import Document
from .entities import extract

__all__ = ["extract", "start"]


async def start(runtime: Runtime) -> None:
    from . import store
    from .pipeline import Classifier

    model, name = None, None
    if runtime.settings.model_dir is not None:  # refuse a mismatched model at start-up
        model, manifest = await asyncio.to_thread(store.load, runtime.settings.model_dir)
        name = str(manifest.get("name"))
    key = runtime.settings.cpr_key
    classifier = await asyncio.to_thread(
        Classifier.from_tenant, runtime.tenant, model, None,
        key.get_secret_value().encode() if key is not None else None)

    batcher = Batcher(classifier.classify_many)

    async def handle(event: ItemEvent, uow: UnitOfWork) -> None:
        if not isinstance(event, ItemExtracted):
            raise InvalidInput(f"classifier got {type(event).__name__}")
        item = await uow.item(event.item_id)
        if item.state != ItemState.EXTRACTED:
            return  # already past this stage (a reconciler re-publish raced the original)
        body = (await runtime.blobs.get(event.text)).decode("utf-8", errors="replace")
        attachments = []
        for attachment in event.attachments:
            if attachment.text is not None:
                attachments.append((await runtime.blobs.get(attachment.text)).decode(
                    "utf-8", errors="replace"))
        doc = Document(subject=event.subject, body=body, attachments=tuple(attachments),
                       attachment_names=own_files(event.attachments),
                       sender=event.sender.address,
                       sender_name=event.sender.name, mailbox=event.mailbox,
                       channel=event.channel.value, auto_submitted=event.auto_submitted)
        c = await batcher.submit(doc)
        item.entities = [e.model_dump() for e in c.entities if e.kind != "keyword"]
        item.personal_data = c.personal_data
        p = c.prediction
        classified = event.follow(
            ItemClassified, "classifier", entities=c.entities, personal_data=c.personal_data,
            prediction=p.label if p else None, probability=p.probability if p else None,
            abstain=p.abstain if p else False, explanation=p.explanation if p else (),
            kle_suggestion=c.kle, model=name)
        said = f"; model {p.probability:.2f} {p.label}" if p else ""
        uow.transition(item, ItemState.CLASSIFIED,
                       reason=f"{len(item.entities)} entities{said}", event=classified)
        uow.emit(classified)

    await runtime.start_consumer(Consumer("classifier", ("item.extracted",), handle))
