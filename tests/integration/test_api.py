"""The HTTP API in-process (httpx.ASGITransport) against migrated SQLite and PostgreSQL
databases, filled through the journal's own handler and unit of work."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from services.api import ANONYMOUS, Principal, create_app, current_principal, verify_audit
from services.journal import Journal, LocalArchive, Receipts, make_sender
from shared.contracts import ItemRouted, ItemState, JournalAction, RouteOutcome
from shared.db.models import AuditEntry, Item
from shared.runtime import Runtime
from shared.settings import DEMO_TENANT_DIR, Settings


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=db_url,  # type: ignore[arg-type]
                    amqp_url="memory://", tenant_dir=DEMO_TENANT_DIR)  # type: ignore[arg-type]


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    rt = Runtime(settings)
    yield rt
    await rt.stop()


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)

    async def reader() -> Principal:  # access control itself is tested in test_access*.py
        return Principal("test", frozenset({"administrator", "auditor"}))

    app.dependency_overrides[current_principal] = reader
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


async def _journalised_item(rt: Runtime, unit: str, *, outcome: RouteOutcome = RouteOutcome.ROUTED,
                            ) -> uuid.UUID:
    """An item as the router leaves it, then handled by the journal and the receipt sender."""
    item_id = uuid.uuid4()
    state = "routed" if outcome == RouteOutcome.ROUTED else outcome.value
    event = ItemRouted(correlation_id=uuid.uuid4(), producer="router", item_id=item_id,
                       outcome=outcome, unit=unit, clerk="ALA", kle="05.09.04", receipt=True,
                       journal=JournalAction.NEW_CASE, reasons=("rule test",))
    async with rt.uow() as uow:
        item = Item(id=item_id, correlation_id=event.correlation_id, channel="email",
                    mailbox="post", source_ref=f"api-{item_id}", subject="Parkering",
                    sender="borger@example.dk", state="classified", entities=[])
        uow.session.add(item)
        await uow.session.flush()
        item.unit, item.clerk = unit, "ALA"
        item.decision = {"outcome": outcome.value, "unit": unit}
        uow.transition(item, ItemState(state),
                       reason="rule test", event=event)
        await uow.commit()
    async with rt.uow() as uow:
        await Journal(rt.tenant, LocalArchive).handle(event, uow)
        await uow.commit()
    await Receipts(rt.uow, rt.tenant, make_sender(rt.settings)).deliver(event)
    await rt.chain_audit()  # what every process's housekeeping does moments later
    return item_id


async def test_health_and_metrics(api: httpx.AsyncClient, runtime: Runtime) -> None:
    await _journalised_item(runtime, "parkering")
    assert (await api.get("/health/live")).json()["status"] == "ok"
    ready = await api.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "bus": "in-process"}
    metrics = await api.get("/metrics")
    assert metrics.status_code == 200
    done = [line for line in metrics.text.splitlines()
            if line.startswith('postfordeler_items{state="done"}')]
    assert done and float(done[0].split()[-1]) >= 1


async def test_item_detail_with_history(api: httpx.AsyncClient, runtime: Runtime) -> None:
    unit = f"unit-{uuid.uuid4().hex[:6]}"
    item_id = await _journalised_item(runtime, unit)
    r = await api.get(f"/api/v1/items/{item_id}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["state"], body["unit"], body["clerk"], body["channel"]) == (
        "done", unit, "ALA", "email")
    assert body["case_number"].startswith("05.09.04-G01-")
    assert body["receipt"] == "sent"
    assert [h["to_state"] for h in body["history"]] == ["routed", "journalised", "done"]
    assert body["history"][0]["at"].endswith("Z") or "+00:00" in body["history"][0]["at"]
    assert (await api.get(f"/api/v1/items/{uuid.uuid4()}")).status_code == 404
    assert (await api.get("/api/v1/items/not-a-uuid")).status_code == 422


async def test_item_list_filters_and_pages(api: httpx.AsyncClient, runtime: Runtime) -> None:
    unit = f"unit-{uuid.uuid4().hex[:6]}"
    ids = {await _journalised_item(runtime, unit) for _ in range(3)}
    triage = await _journalised_item(runtime, unit, outcome=RouteOutcome.TRIAGE)
    r = await api.get("/api/v1/items", params={"unit": unit, "limit": 2})
    page = r.json()
    assert page["total"] == 4 and len(page["items"]) == 2
    rest = (await api.get("/api/v1/items", params={"unit": unit, "limit": 2, "offset": 2})).json()
    assert {i["id"] for i in page["items"] + rest["items"]} == {str(i) for i in ids | {triage}}
    only = (await api.get("/api/v1/items", params={"unit": unit, "state": "triage"})).json()
    assert [i["id"] for i in only["items"]] == [str(triage)]
    assert (await api.get("/api/v1/items", params={"limit": 0})).status_code == 422


async def test_audit_journal_filters(api: httpx.AsyncClient, runtime: Runtime) -> None:
    unit = f"unit-{uuid.uuid4().hex[:6]}"
    item_id = await _journalised_item(runtime, unit)
    case_number = (await api.get(f"/api/v1/items/{item_id}")).json()["case_number"]
    by_case = (await api.get("/api/v1/audit/journal", params={"case_number": case_number})).json()
    assert [(e["action"], e["item_id"]) for e in by_case["entries"]] == [
        ("journalised", str(item_id))]
    by_item = (await api.get("/api/v1/audit/journal", params={"item_id": str(item_id)})).json()
    assert [e["action"] for e in by_item["entries"]] == ["routed", "journalised", "receipt_sent"]
    seqs = [e["seq"] for e in by_item["entries"]]
    assert seqs == sorted(seqs) and all(len(e["hash"]) == 64 for e in by_item["entries"])
    by_unit = (await api.get("/api/v1/audit/journal",
                             params={"unit": unit, "action": "routed"})).json()
    assert by_unit["total"] == 1 and by_unit["entries"][0]["details"]["reasons"] == ["rule test"]
    paged = (await api.get("/api/v1/audit/journal", params={"item_id": str(item_id),
                                                            "limit": 1, "offset": 1})).json()
    assert paged["total"] == 3 and [e["seq"] for e in paged["entries"]] == seqs[1:2]
    now = datetime.now(UTC)
    window = {"item_id": str(item_id), "date_from": (now - timedelta(minutes=5)).isoformat(),
              "date_to": (now + timedelta(minutes=5)).isoformat()}
    assert (await api.get("/api/v1/audit/journal", params=window)).json()["total"] == 3
    window["date_from"] = (now + timedelta(minutes=1)).isoformat()
    assert (await api.get("/api/v1/audit/journal", params=window)).json()["total"] == 0


async def test_audit_verify_endpoint_and_command(api: httpx.AsyncClient, runtime: Runtime,
                                                 settings: Settings) -> None:
    item_id = await _journalised_item(runtime, "parkering")
    body = (await api.get("/api/v1/audit/verify")).json()
    assert body["ok"] and body["checked"] >= 3, body
    assert (await verify_audit(settings)).ok
    async with runtime.uow() as uow:
        entry = (await uow.session.execute(
            AuditEntry.__table__.select().where(AuditEntry.item_id == item_id)
            .order_by(AuditEntry.seq).limit(1))).first()
        assert entry is not None
        await uow.session.execute(update(AuditEntry).where(AuditEntry.seq == entry.seq)
                                  .values(unit="tampered"))
        await uow.commit()
    try:
        body = (await api.get("/api/v1/audit/verify")).json()
        assert not body["ok"] and body["first_bad_seq"] == entry.seq
        assert not (await verify_audit(settings)).ok
    finally:  # the PostgreSQL database is shared by the test session: repair the chain
        async with runtime.uow() as uow:
            await uow.session.execute(update(AuditEntry).where(AuditEntry.seq == entry.seq)
                                      .values(unit=entry.unit))
            await uow.commit()
    assert (await api.get("/api/v1/audit/verify")).json()["ok"]


async def test_access_control_hook(api: httpx.AsyncClient) -> None:
    from fastapi import HTTPException

    app: FastAPI = api.app  # type: ignore[attr-defined]

    async def deny() -> Principal:
        raise HTTPException(403, "no access")

    app.dependency_overrides[current_principal] = deny
    try:
        assert (await api.get("/api/v1/items")).status_code == 403
        assert (await api.get("/health/live")).status_code == 200
    finally:
        app.dependency_overrides.clear()
    assert ANONYMOUS.name == "anonymous"
    assert (await api.get("/api/v1/items")).status_code == 401  # no credentials


async def test_ready_reports_an_unreachable_bus(tmp_path: Path, sqlite_url: str) -> None:
    settings = Settings(data_dir=tmp_path, database_url=sqlite_url,  # type: ignore[arg-type]
                        amqp_url="amqp://guest:guest@127.0.0.1:1/")  # type: ignore[arg-type]
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        r = await client.get("/health/ready")
    assert r.status_code == 503
    assert r.json()["checks"]["database"] == "ok"
    assert r.json()["checks"]["bus"].startswith("error")
