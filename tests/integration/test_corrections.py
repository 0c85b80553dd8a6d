"""Clerks' corrections become training data, on SQLite and PostgreSQL (a database of the test's
own, since the export reads every correction): items re-routed and triage items assigned
through the clerk API are exported in the sample data's item format with the clerk's unit
(0600, it holds message text), the latest correction wins, items that moved on or whose
content is gone are left out and counted, and `train --corrections` learns the corrected label
instead of the one an item file gave the same item."""

from __future__ import annotations

import asyncio
import json
import stat
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from postfordeler.cli import app
from services.api import create_app
from services.classifier.corrections import merge
from services.classifier.document import from_labelled
from services.classifier.training import data_hash
from shared.auth import Role
from shared.blobs import FileBlobStore
from shared.bus import make_bus
from shared.contracts import Address, AttachmentRef, ItemExtracted, ItemState
from shared.db.models import Retention
from shared.settings import Settings
from shared.tenant import Tenant
from tests.conftest import SAMPLE_DATA, own_database, unavailable
from tests.integration.test_access import Api, make_tenant


@pytest.fixture(params=["sqlite", "postgres"])
def own_db(request: pytest.FixtureRequest) -> Iterator[str]:
    with own_database(request, "pf_corr") as url:
        yield url


@pytest.fixture
def settings(own_db: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=own_db,
                    amqp_url="memory://",
                    tenant_dir=make_tenant(tmp_path / "tenant"))


class CorrectionsApi(Api):
    async def mail(self, unit: str | None, body: str, *, state: ItemState = ItemState.DONE,
                   attachment: str = "") -> uuid.UUID:
        """An item whose extracted text and attachment text are stored as blobs."""
        store = FileBlobStore(self.settings.blobs_path)
        text = await store.put(body.encode(), "text/plain")
        pdf = await store.put(f"%PDF-1.4 {body}".encode(), "application/pdf")
        read = await store.put(attachment.encode(), "text/plain") if attachment else None
        item_id = await self.item(unit, state, subject=body[:40])
        async with self.uow() as uow:
            item = await uow.item(item_id)
            uow.emit(ItemExtracted(
                correlation_id=item.correlation_id, producer="extractor", item_id=item_id,
                channel="email", mailbox="post@eksempelby.dk",
                subject=body[:40], sender=Address(name="Bo Borger", address="bo@example.dk"),
                recipients=("post@eksempelby.dk",), text=text,
                attachments=(AttachmentRef(filename="bilag.pdf", content_type="application/pdf",
                                           blob=pdf, text=read),)))
            await uow.commit()
        return item_id

    async def reroute(self, item_id: uuid.UUID, key: dict[str, str], unit: str,
                      reason: str, clerk: str | None = None) -> None:
        r = await self.client.post(f"/api/v1/items/{item_id}/reroute", headers=key,
                                   json={"unit": unit, "clerk": clerk, "reason": reason})
        assert r.status_code == 200, r.text


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[CorrectionsApi]:
    bus = make_bus("memory://")
    app_ = create_app(settings, bus=bus)
    async with app_.router.lifespan_context(app_), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app_), base_url="http://test") as client:
        helper = CorrectionsApi(client, settings)
        yield helper
        await helper.close()
    await bus.close()


async def cli(settings: Settings, *args: str) -> Result:
    env = {"POSTFORDELER_DATABASE_URL": settings.db_url,
           "POSTFORDELER_DATA_DIR": str(settings.data_dir)}
    # The command runs its own event loop: off this test's loop, in a thread.
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)


async def corrected_world(api: CorrectionsApi) -> dict[str, uuid.UUID]:
    """Items re-routed, assigned from triage, left alone, and corrected but since changed."""
    tag = uuid.uuid4().hex[:8]
    fallback = Tenant(api.settings.tenant_dir).fallback_unit
    tbn = await api.key(Role.CLERK, units=("parkering",), name="TBN")
    kmo = await api.key(Role.CLERK, units=("byggeri",), name="KMO")
    team = await api.key(Role.CLERK, units=(fallback,), name="POST")
    ids = {
        "rerouted": await api.mail("parkering", f"Ansøgning om byggetilladelse til carport {tag}",
                                   attachment=f"Tegning af carport, 30 m2 {tag}"),
        "assigned": await api.mail(fallback, f"Storskrald hentes ikke {tag}",
                                   state=ItemState.TRIAGE),
        "untouched": await api.mail("parkering", f"Parkeringsafgift klage {tag}"),
        "twice": await api.mail("parkering", f"Skur og affaldsspande {tag}"),
        "moved_on": await api.mail("parkering", f"Tilbygning {tag}"),
        "lost_text": await api.mail("parkering", f"Tagterrasse {tag}"),
        "purged": await api.mail("parkering", f"Kælder {tag}"),
        "sent_back": await api.mail("parkering", f"Hvem skal have denne {tag}"),
    }
    await api.reroute(ids["rerouted"], tbn, "byggeri", "Byggesag, CPR 010203-1234", "KMO")
    await api.reroute(ids["assigned"], team, "affald", "storskrald")
    await api.reroute(ids["twice"], tbn, "byggeri", "skur")
    await api.reroute(ids["twice"], kmo, "affald", "det er affaldsspande")
    await api.reroute(ids["sent_back"], tbn, fallback, "ikke vores")  # back to triage
    for name in ("moved_on", "lost_text", "purged"):
        await api.reroute(ids[name], tbn, "byggeri", "byggeri")
    async with api.uow() as uow:
        (await uow.item(ids["moved_on"])).unit = "affald"  # changed since, not by a correction
        uow.session.add(Retention(item_id=ids["purged"]))
        await uow.commit()
    store = FileBlobStore(api.settings.blobs_path)
    store.path(store.put_sync(f"Tagterrasse {tag}".encode()).sha256).unlink()
    return ids


async def test_export_writes_the_clerks_labels_in_the_item_format(
        api: CorrectionsApi, tmp_path: Path) -> None:
    ids = await corrected_world(api)
    out = tmp_path / "export" / "corrections.jsonl"
    done = await cli(api.settings, "corrections", "export", "--out", str(out))
    assert done.exit_code == 0, done.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "mode 0600, contains message text" in done.stdout
    assert ("3 corrected item(s) (affald 2, byggeri 1); left out: 1 content deleted by "
            "retention; 1 moved on since the correction; 1 text no longer stored; "
            "1 waiting in triage") in done.stdout
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    by_id = {line["id"]: line for line in lines}
    assert set(by_id) == {str(ids[n]) for n in ("rerouted", "assigned", "twice")}
    first = by_id[str(ids["rerouted"])]
    assert first["label"]["unit"] == "byggeri" and first["label"]["clerk"] == "KMO"
    assert first["label"]["notes"].endswith("from parkering: Byggesag, CPR [CPR]")
    assert first["body"].startswith("Ansøgning om byggetilladelse til carport")
    assert first["attachments"][0]["text"].startswith("Tegning af carport")
    assert first["from"] == {"name": "Bo Borger", "address": "bo@example.dk"}
    assert (first["channel"], first["mailbox"], first["to"]) == (
        "email", "post@eksempelby.dk", ["post@eksempelby.dk"])
    assert by_id[str(ids["assigned"])]["label"]["unit"] == "affald"
    assert by_id[str(ids["twice"])]["label"]["unit"] == "affald"  # the latest correction
    item = from_labelled(first)  # what training reads
    assert item.label.unit == "byggeri" and "carport" in item.document.attachments[0]
    since = await cli(api.settings, "corrections", "export", "--out", str(out),
                      "--since", "2999-01-01")
    assert since.exit_code == 0 and out.read_text() == ""


async def test_train_uses_the_corrected_label(api: CorrectionsApi, tmp_path: Path) -> None:
    sample = Path(SAMPLE_DATA) / "items" / "dev-1.jsonl"
    if not sample.exists():
        unavailable(f"the sample items at {sample}")
    ids = await corrected_world(api)
    # An item file that labelled the re-routed item as the system first routed it.
    lines = sample.read_text(encoding="utf-8").splitlines()
    earlier = json.loads(lines[0])
    earlier.update(id=str(ids["rerouted"]), label={**earlier["label"], "unit": "parkering"})
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join([*lines, json.dumps(earlier, ensure_ascii=False)]) + "\n",
                     encoding="utf-8")
    export = tmp_path / "corrections.jsonl"
    assert (await cli(api.settings, "corrections", "export", "--out", str(export))
            ).exit_code == 0
    out = tmp_path / "model"
    done = await cli(api.settings, "train", "--items", str(items), "--tenant",
                     str(api.settings.tenant_dir), "--out", str(out), "--corrections")
    assert done.exit_code == 0, done.output
    assert "corrections: 3 corrected item(s)" in done.stdout
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    from postfordeler.commands.classifier import read_items

    files = read_items([items])
    corrected = merge(files, read_items([export]))
    assert len(corrected) == len(lines) + 3  # the re-routed item once, two more added
    assert next(i for i in corrected if i.id == str(ids["rerouted"])).label.unit == "byggeri"
    # The model learnt from exactly that set: the corrected label, not the file's.
    assert manifest["metrics"]["items"] == len(corrected)
    assert manifest["training_data_sha256"] == data_hash(corrected)
    assert data_hash(corrected) != data_hash(merge(files, []) + corrected[len(lines) + 1:])
