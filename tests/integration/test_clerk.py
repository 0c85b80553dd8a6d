"""The clerk API on SQLite and PostgreSQL: my unit's items, one item with its text and
attachments, claim/release/done, re-route (history, audit, correction, a new ItemRouted), and
the main-mailbox team's triage queue, assigned through the same API and then journalised."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from services.api import create_app
from services.journal import Journal, LocalArchive
from shared.auth import Role
from shared.blobs import FileBlobStore
from shared.bus import make_bus
from shared.contracts import (
    Address,
    AttachmentRef,
    ItemEvent,
    ItemExtracted,
    ItemRouted,
    ItemState,
    JournalAction,
)
from shared.db.models import AuditPending, Correction, Item
from shared.settings import Settings
from shared.tenant import Tenant
from tests.integration.test_access import Api, make_tenant

RAW = b"From: borger@example.dk\r\nSubject: Parkering\r\n\r\nHej, CPR 010203-1234\r\n"


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=db_url,  # type: ignore[arg-type]
                    amqp_url="memory://",  # type: ignore[arg-type]
                    tenant_dir=make_tenant(tmp_path / "tenant"))


class ClerkApi(Api):
    routed: list[ItemRouted]

    async def mail(self, unit: str | None, state: ItemState = ItemState.DONE,
                   subject: str = "Parkering") -> uuid.UUID:
        """An item with a stored original, extracted text and one attachment."""
        store = FileBlobStore(self.settings.blobs_path)
        raw = await store.put(RAW, "message/rfc822")
        text = await store.put("Hej, jeg har fået en afgift.".encode(), "text/plain")
        pdf = await store.put(b"%PDF-1.4 afgift", "application/pdf")
        item_id = await self.item(unit, state, subject=subject, raw_sha256=raw.sha256)
        async with self.uow() as uow:
            item = await uow.item(item_id)
            uow.emit(ItemExtracted(
                correlation_id=item.correlation_id, producer="extractor", item_id=item_id,
                channel="email", mailbox="post", subject=subject,  # type: ignore[arg-type]
                sender=Address(address="borger@example.dk"), text=text,
                attachments=(AttachmentRef(filename="afgift æøå.pdf",
                                           content_type="application/pdf", blob=pdf),)))
            await uow.commit()
        return item_id


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[ClerkApi]:
    bus = make_bus("memory://")
    routed: list[ItemRouted] = []

    async def collect(event: ItemEvent) -> None:
        assert isinstance(event, ItemRouted)
        routed.append(event)

    await bus.subscribe("test-routed", ("item.routed",), collect)
    app = create_app(settings, bus=bus)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        helper = ClerkApi(client, settings)
        helper.routed = routed
        yield helper
        await helper.close()
    await bus.close()


async def test_my_units_items_with_filters_and_paging(api: ClerkApi) -> None:
    unit = "affald"
    ids = [await api.mail(unit, subject=f"Storskrald {n}") for n in range(3)]
    await api.mail("byggeri")
    tbn = await api.key(Role.CLERK, units=(unit,), name=f"C{uuid.uuid4().hex[:6]}")
    page = (await api.client.get("/api/v1/items", headers=tbn,
                                 params={"limit": 2, "unit": unit})).json()
    assert page["total"] >= 3 and len(page["items"]) == 2
    found = (await api.client.get("/api/v1/items", headers=tbn,
                                  params={"subject": "storskrald 1"})).json()
    assert str(ids[1]) in {i["id"] for i in found["items"]}
    assert {i["unit"] for i in found["items"]} == {unit}
    await api.client.post(f"/api/v1/items/{ids[0]}/claim", headers=tbn)
    mine = (await api.client.get("/api/v1/items", headers=tbn, params={"mine": True})).json()
    assert [i["id"] for i in mine["items"]] == [str(ids[0])]
    unclaimed = (await api.client.get("/api/v1/items", headers=tbn,
                                      params={"unclaimed": True, "limit": 1000})).json()
    assert str(ids[0]) not in {i["id"] for i in unclaimed["items"]}


async def test_view_text_attachments_and_original(api: ClerkApi) -> None:
    item_id = await api.mail("parkering")
    tbn = await api.key(Role.CLERK, units=("parkering",))
    body = (await api.client.get(f"/api/v1/items/{item_id}", headers=tbn)).json()
    assert body["text"] == "Hej, jeg har fået en afgift."
    assert body["attachments"] == [{"index": 0, "filename": "afgift æøå.pdf",
                                    "content_type": "application/pdf", "size": 15,
                                    "has_text": False}]
    pdf = await api.client.get(f"/api/v1/items/{item_id}/attachments/0", headers=tbn)
    assert pdf.status_code == 200 and pdf.content == b"%PDF-1.4 afgift"
    assert pdf.headers["content-type"] == "application/pdf"
    assert "filename*=UTF-8''afgift%20%C3%A6%C3%B8%C3%A5.pdf" in pdf.headers[
        "content-disposition"]
    assert (await api.client.get(f"/api/v1/items/{item_id}/attachments/1",
                                 headers=tbn)).status_code == 404
    raw = await api.client.get(f"/api/v1/items/{item_id}/raw", headers=tbn)
    assert raw.content == RAW and raw.headers["content-type"] == "message/rfc822"


async def test_claim_release_and_done(api: ClerkApi) -> None:
    item_id = await api.mail("parkering")
    tbn = await api.key(Role.CLERK, units=("parkering",), name="TBN")
    ala = await api.key(Role.CLERK, units=("parkering",), name="ALA")
    url = f"/api/v1/items/{item_id}"
    r = await api.client.post(f"{url}/claim", headers=tbn)
    assert r.status_code == 200 and r.json()["claimed_by"] == "TBN"
    assert (await api.client.post(f"{url}/claim", headers=tbn)).status_code == 200  # idempotent
    assert (await api.client.post(f"{url}/claim", headers=ala)).status_code == 409
    assert (await api.client.post(f"{url}/done", headers=ala)).status_code == 409
    assert (await api.client.post(f"{url}/release", headers=ala)).status_code == 409
    assert (await api.client.post(f"{url}/release", headers=tbn)).json()["claimed_by"] is None
    done = (await api.client.post(f"{url}/done", headers=ala)).json()
    assert (done["claimed_by"], done["handled_by"]) == ("ALA", "ALA")
    assert done["handled_at"] is not None
    handled = (await api.client.get("/api/v1/items", headers=ala,
                                    params={"handled": False, "limit": 1000})).json()
    assert str(item_id) not in {i["id"] for i in handled["items"]}
    async with api.uow() as uow:
        actions = (await uow.session.execute(select(AuditPending.action).where(
            AuditPending.item_id == item_id).order_by(AuditPending.id))).scalars().all()
    assert actions == ["claimed", "released", "handled"]


async def test_reroute_records_delivers_anew_and_keeps_training_data(api: ClerkApi) -> None:
    item_id = await api.mail("parkering")
    tbn = await api.key(Role.CLERK, units=("parkering",), name="TBN")
    kmo = await api.key(Role.CLERK, units=("byggeri",), name="KMO")
    url = f"/api/v1/items/{item_id}"
    await api.client.post(f"{url}/claim", headers=tbn)
    bad = [({"unit": "nowhere", "reason": "x"}, 400), ({"unit": "byggeri", "reason": ""}, 422),
           ({"unit": "byggeri", "clerk": "ZZZ", "reason": "x"}, 400),
           ({"unit": "parkering", "reason": "same"}, 409)]
    for body, status in bad:
        r = await api.client.post(f"{url}/reroute", headers=tbn, json=body)
        assert r.status_code == status, (body, r.text)
    r = await api.client.post(f"{url}/reroute", headers=tbn, json={
        "unit": "byggeri", "clerk": "KMO", "reason": "Byggesag, borger 010203-1234"})
    assert r.status_code == 200, r.text
    # the item left my unit: it is now as invisible to me as any other unit's item
    assert (await api.client.get(url, headers=tbn)).status_code == 404
    body = (await api.client.get(url, headers=kmo)).json()
    assert (body["unit"], body["clerk"], body["state"], body["claimed_by"]) == (
        "byggeri", "KMO", "done", None)
    assert body["history"][-1]["reason"] == \
        "re-routed from parkering to byggeri: Byggesag, borger [CPR]"
    assert body["corrections"][0]["reason"] == "Byggesag, borger [CPR]"
    assert body["decision"]["rerouted"]["from_unit"] == "parkering"
    async with api.uow() as uow:
        correction = (await uow.session.execute(select(Correction).where(
            Correction.item_id == item_id))).scalar_one()
        entry = (await uow.session.execute(select(AuditPending).where(
            AuditPending.item_id == item_id, AuditPending.action == "rerouted"))
        ).scalar_one()
    assert (correction.from_unit, correction.to_unit, correction.actor) == (
        "parkering", "byggeri", "TBN")
    assert correction.text_sha256 is not None and correction.decision["unit"] == "parkering"
    assert entry.actor == "TBN" and "010203" not in str(entry.details)
    for _ in range(100):
        if any(e.item_id == item_id for e in api.routed):
            break
        await asyncio.sleep(0.02)
    event = next(e for e in api.routed if e.item_id == item_id)
    assert (event.unit, event.clerk, event.journal) == ("byggeri", "KMO", JournalAction.NONE)


async def test_triage_queue_is_assigned_by_the_main_mailbox_team(
        api: ClerkApi, settings: Settings) -> None:
    tenant = Tenant(settings.tenant_dir)
    item_id = await api.mail(tenant.fallback_unit, ItemState.TRIAGE, subject="Hvem skal have den?")
    team = await api.key(Role.CLERK, units=(tenant.fallback_unit,), name="POST")
    other = await api.key(Role.CLERK, units=("parkering",))
    queue = (await api.client.get("/api/v1/triage", headers=team,
                                  params={"limit": 1000})).json()
    assert str(item_id) in {i["id"] for i in queue["items"]}
    assert {i["state"] for i in queue["items"]} == {"triage"}
    others = (await api.client.get("/api/v1/triage", headers=other)).json()["items"]
    assert str(item_id) not in {i["id"] for i in others}
    assert (await api.client.post(f"/api/v1/items/{item_id}/done",
                                  headers=team)).status_code == 409
    r = await api.client.post(f"/api/v1/items/{item_id}/reroute", headers=team,
                              json={"unit": "affald", "reason": "storskrald"})
    assert r.status_code == 200 and r.json()["state"] == "routed"
    for _ in range(100):
        if any(e.item_id == item_id for e in api.routed):
            break
        await asyncio.sleep(0.02)
    event = next(e for e in api.routed if e.item_id == item_id)
    assert (event.unit, event.journal, event.kle) == ("affald", JournalAction.NEW_CASE, "07")
    # the journal takes it from here, exactly as after the router
    async with api.uow() as uow:
        await Journal(tenant, LocalArchive).handle(event, uow)
        await uow.commit()
    async with api.uow() as uow:
        item = await uow.session.get(Item, item_id)
        assert item is not None and item.state == "done" and item.case_number
        assert item.case_number.startswith("07-")


async def _routed_event(api: ClerkApi, item_id: uuid.UUID, seen: int) -> ItemRouted:
    """The (seen+1)-th routing event of the item, once published."""
    for _ in range(100):
        if len([e for e in api.routed if e.item_id == item_id]) > seen:
            break
        await asyncio.sleep(0.02)
    return [e for e in api.routed if e.item_id == item_id][seen]


async def test_back_to_triage_is_recorded_queued_and_not_journalised_twice(
        api: ClerkApi, settings: Settings) -> None:
    tenant = Tenant(settings.tenant_dir)
    fallback = tenant.fallback_unit
    item_id = await api.mail(fallback, ItemState.TRIAGE, subject="Storskrald")
    team = await api.key(Role.CLERK, units=(fallback,), name="POST")
    bkr = await api.key(Role.CLERK, units=("affald",), name="BKR")
    url = f"/api/v1/items/{item_id}"
    assert (await api.client.post(f"{url}/reroute", headers=team, json={
        "unit": "affald", "reason": "storskrald"})).status_code == 200
    first = await _routed_event(api, item_id, 0)
    async with api.uow() as uow:  # journalised on a new case, as after the router
        await Journal(tenant, LocalArchive).handle(first, uow)
        await uow.commit()
    case = (await api.client.get(url, headers=bkr)).json()["case_number"]
    assert case

    # the unit cannot place it: back to manual triage, with a reason
    for body, status in [({"unit": fallback, "clerk": "POST", "reason": "x"}, 400),
                         ({"unit": fallback, "reason": ""}, 422)]:
        r = await api.client.post(f"{url}/reroute", headers=bkr, json=body)
        assert r.status_code == status, (body, r.text)
    r = await api.client.post(f"{url}/reroute", headers=bkr, json={
        "unit": fallback, "reason": "ikke storskrald men haveaffald, borger 010203 1234"})
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["unit"], r.json()["clerk"]) == ("triage", fallback, None)
    assert (await api.client.get(url, headers=bkr)).status_code == 404  # not mine any more
    queue = (await api.client.get("/api/v1/triage", headers=team,
                                  params={"limit": 1000})).json()
    assert str(item_id) in {i["id"] for i in queue["items"]}
    body = (await api.client.get(url, headers=team)).json()
    assert body["history"][-1]["reason"] == ("sent back to triage from affald: ikke storskrald "
                                             "men haveaffald, borger [CPR]")
    assert body["decision"]["rerouted"] == {
        "by": "BKR", "from_unit": "affald", "to_triage": True,
        "reason": "ikke storskrald men haveaffald, borger [CPR]"}
    assert [(c["from_unit"], c["to_unit"]) for c in body["corrections"]][-1] == (
        "affald", fallback)
    async with api.uow() as uow:
        entries = (await uow.session.execute(select(AuditPending).where(
            AuditPending.item_id == item_id, AuditPending.action == "rerouted")
            .order_by(AuditPending.id))).scalars().all()
    assert entries[-1].actor == "BKR" and entries[-1].unit == fallback
    assert entries[-1].details["to_triage"] is True and "010203" not in str(entries[-1].details)
    back = await _routed_event(api, item_id, 1)
    assert (back.outcome.value, back.unit, back.clerk, back.journal, back.receipt) == (
        "triage", fallback, None, JournalAction.NONE, False)
    assert (await api.client.post(f"{url}/reroute", headers=team, json={
        "unit": fallback, "reason": "igen"})).status_code == 409  # already in triage

    # the triage team sends it on: delivered anew, but not journalised a second time
    r = await api.client.post(f"{url}/reroute", headers=team, json={
        "unit": "natur-miljoe", "reason": "haveaffald"})
    assert r.status_code == 200 and r.json()["state"] == "routed"
    again = await _routed_event(api, item_id, 2)
    assert (again.unit, again.journal, again.receipt) == ("natur-miljoe", JournalAction.NONE,
                                                          False)
    async with api.uow() as uow:
        await Journal(tenant, LocalArchive).handle(again, uow)
        await uow.commit()
    async with api.uow() as uow:
        item = await uow.session.get(Item, item_id)
        assert item is not None and (item.state, item.case_number) == ("done", case)


async def test_back_to_triage_from_the_web_interface(api: ClerkApi, settings: Settings) -> None:
    from tests.unit.test_ui import _browser, _key

    fallback = Tenant(settings.tenant_dir).fallback_unit
    item_id = await api.mail("affald", subject="Forkert enhed")
    client, csrf = await _browser(api, await _key(api, Role.CLERK, ("affald",), "BKR"))
    page = (await client.get(f"/ui/items/{item_id}")).text
    assert f'<option value="{fallback}">Tilbage til manuel fordeling' in page
    r = await client.post(f"/ui/items/{item_id}/reroute/to",
                          data={"csrf": csrf, "unit": fallback, "reason": "ved ikke hvem"})
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/items?notice=")
    async with api.uow() as uow:
        item = await uow.session.get(Item, item_id)
        assert item is not None and (item.state, item.unit) == ("triage", fallback)
    team, _ = await _browser(api, await _key(api, Role.CLERK, (fallback,), "POST"))
    assert "Forkert enhed" in (await team.get("/ui/triage")).text
    await client.aclose()
    await team.aclose()
