"""The classifier service with a trained model inside the pipeline (in-process bus, SQLite and
PostgreSQL): an ItemExtracted goes in, an ItemClassified with the model's prediction comes
out, and the router routes on that prediction."""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postfordeler.commands.classifier import read_items
from services import classifier, router
from services.classifier import store
from services.classifier.kle import parse_emneplan
from services.classifier.training import data_hash, train_model
from shared.bus import RetryPolicy
from shared.bus._memory import MemoryBus
from shared.contracts import ItemClassified, ItemEvent, ItemExtracted, ItemRouted, ItemState
from shared.db.models import Item
from shared.runtime import Runtime
from shared.settings import Settings
from shared.tenant import Tenant
from tests.conftest import CORPUS, SAMPLE_DATA, async_wait_for

TENANT = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "eksempelby"
ITEMS = Path(SAMPLE_DATA) / "items"
KLE_PLAN = Path(CORPUS) / "kle" / "KLE-Emneplan_Version2-0_2015-08-01.xml"
BODY = ("Hej\n\nJeg har fået en parkeringsafgift i går på Torvet, men jeg holdt i en "
        "handicapbås med gyldigt handicapkort i forruden. Kan I annullere afgiften?\n\n"
        "Venlig hilsen\nKaren Holm")


@pytest.fixture(scope="module")
def model_and_tenant(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if not KLE_PLAN.exists() or not ITEMS.exists():
        pytest.skip("needs the sample data and KL's KLE plan (POSTFORDELER_CORPUS)")
    root = tmp_path_factory.mktemp("classifier")
    tenant_dir = root / "tenant"
    shutil.copytree(TENANT, tenant_dir)
    plan = parse_emneplan(KLE_PLAN.read_bytes())
    (tenant_dir / "kle.json").write_text(plan.to_json(), encoding="utf-8")  # as `kle import`
    items = read_items(sorted(ITEMS.glob("dev-*.jsonl")))
    model, metrics = train_model(Tenant(tenant_dir), items, plan=plan)
    store.save(model, root / "model", name="eksempelby", data_hash=data_hash(items),
               metrics=metrics, tenant=str(tenant_dir))
    return root / "model", tenant_dir


@contextlib.asynccontextmanager
async def pipeline(tmp_path: Path, db_url: str, model_and_tenant: tuple[Path, Path],
                   routing: bool) -> AsyncIterator[tuple[Runtime, list[ItemEvent]]]:
    """The classifier (and the router) on the in-process bus, with the events they publish."""
    model_dir, tenant_dir = model_and_tenant
    settings = Settings(data_dir=tmp_path, database_url=db_url,
                        tenant_dir=tenant_dir, model_dir=model_dir)
    runtime = Runtime(settings, bus=MemoryBus(policy=RetryPolicy(3, 0.01, 0.05), prefetch=4))
    seen: list[ItemEvent] = []

    async def collect(event: ItemEvent) -> None:
        seen.append(event)

    await runtime.start()
    try:
        await classifier.start(runtime)
        if routing:
            await router.start(runtime)
        await runtime.bus.subscribe("t-watch", ("item.classified", "item.routed"), collect)
        yield runtime, seen
    finally:
        await runtime.stop()


async def submit(runtime: Runtime, event: ItemExtracted) -> None:
    """The item's row as extraction leaves it, then its event on the bus."""
    async with runtime.uow() as uow:
        uow.session.add(Item(id=event.item_id, correlation_id=event.correlation_id,
                             channel=event.channel.value, mailbox=event.mailbox,
                             source_ref=f"t:{event.item_id}", state=ItemState.EXTRACTED.value))
        await uow.commit()
    await runtime.bus.publish(event)


async def test_classifier_predicts_and_router_routes_on_it(
        tmp_path: Path, db_url: str, model_and_tenant: tuple[Path, Path]) -> None:
    async with pipeline(tmp_path, db_url, model_and_tenant, routing=True) as (runtime, seen):
        text = await runtime.blobs.put(BODY.encode(), "text/plain")
        item_id = uuid.uuid4()
        event = ItemExtracted(correlation_id=uuid.uuid4(), producer="test", item_id=item_id,
                              channel="email", mailbox="post@eksempelby.dk",
                              subject="Parkeringsafgift - handicapkort",
                              sender={"name": "Karen Holm", "address": "karen.holm@mail.dk"},
                              text=text)
        await submit(runtime, event)

        async def routed() -> bool:
            return any(isinstance(e, ItemRouted) for e in seen)

        await async_wait_for(routed, timeout=20)
        classified = next(e for e in seen if isinstance(e, ItemClassified))
        assert classified.model == "eksempelby"
        assert classified.prediction == "parkering" and not classified.abstain
        assert classified.probability is not None and classified.probability > 0.5
        assert classified.explanation and classified.kle_suggestion is not None
        assert classified.kle_suggestion.startswith("05.09")
        routed_event = next(e for e in seen if isinstance(e, ItemRouted))
        assert routed_event.unit == "parkering"
        assert routed_event.reasons[0].startswith("model ")
        async with runtime.uow() as uow:
            item = await uow.item(item_id, lock=False)
        assert item.state == ItemState.ROUTED.value and item.unit == "parkering"
        assert item.decision is not None and item.decision["receipt"] is True


@pytest.mark.parametrize(("container", "parent", "counts"), [
    ("message/rfc822", None, True), ("message/rfc822", 0, False),
    ("application/zip", 0, True)])
async def test_a_disguised_attachment_counts_only_when_it_is_the_items_own(
        tmp_path: Path, db_url: str, model_and_tenant: tuple[Path, Path], container: str,
        parent: int | None, counts: bool) -> None:
    # A citizen forwarding a phishing mail ("is this from you?") carries the disguised file
    # inside the forwarded message (parent 0): not the sign. Inside a ZIP the sender sent, it
    # is.
    from shared.contracts import AttachmentRef

    async with pipeline(tmp_path, db_url, model_and_tenant, routing=False) as (runtime, seen):
        text = await runtime.blobs.put(b"Er denne mail fra jer? Se vedhaeftet.", "text/plain")
        blob = await runtime.blobs.put(b"<html>log ind</html>", "text/html")
        files = [AttachmentRef(filename="videresendt", content_type=container, blob=blob),
                 AttachmentRef(filename="Faktura-2231.pdf.htm", content_type="text/html",
                               blob=blob, parent=parent)]
        item_id = uuid.uuid4()
        event = ItemExtracted(correlation_id=uuid.uuid4(), producer="test", item_id=item_id,
                              channel="email", mailbox="post@eksempelby.dk",
                              subject="Faktura?", text=text, attachments=tuple(files),
                              sender={"name": "Ole Berg", "address": "ole.berg@mail.dk"})
        await submit(runtime, event)

        async def classified() -> bool:
            return any(isinstance(e, ItemClassified) for e in seen)

        await async_wait_for(classified, timeout=20)
        done = next(e for e in seen if isinstance(e, ItemClassified))
        signs = [e.value for e in done.entities if e.kind == "disguised_attachment"]
        assert signs == (["pdf.htm"] if counts else [])
