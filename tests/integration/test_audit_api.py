"""The audit API against migrated SQLite and PostgreSQL: filters, paging, CSV, the CPR query
for auditors only (and itself audited), and an item's receipt status."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from services.api import create_app, current_principal
from services.api.deps import Principal
from services.classifier.entities import Knowledge, extract
from shared import audit
from shared.db.models import Item, Receipt
from shared.runtime import Runtime
from shared.settings import DEMO_TENANT_DIR, Settings

CPR = "0101901234"
CPR_KEY = "test-cpr-key"


def _cpr_entities() -> list[dict[str, object]]:
    """As the classifier stores them: the number masked, with its keyed fingerprint."""
    found = extract("Flytning", f"Mit CPR-nummer er {CPR[:6]}-{CPR[6:]}.",
                    knowledge=Knowledge(cpr_key=CPR_KEY.encode()))
    cpr = [e.model_dump() for e in found if e.kind == "cpr"]
    assert cpr and all("1234" not in str(e["value"]) for e in cpr)
    return cpr


@pytest.fixture
async def runtime(db_url: str, tmp_path: Path) -> AsyncIterator[Runtime]:
    rt = Runtime(Settings(data_dir=tmp_path / "d", database_url=db_url,  # type: ignore[arg-type]
                          amqp_url="memory://", tenant_dir=DEMO_TENANT_DIR,  # type: ignore[arg-type]
                          cpr_key=CPR_KEY))  # type: ignore[arg-type]
    yield rt
    await rt.stop()


@pytest.fixture
async def app(runtime: Runtime) -> AsyncIterator[FastAPI]:
    app = create_app(runtime.settings)
    async with app.router.lifespan_context(app):
        yield app


def _client(app: FastAPI, roles: set[str]) -> httpx.AsyncClient:
    async def who() -> Principal:
        return Principal("revisor1" if "auditor" in roles else "laeser", frozenset(roles))
    app.dependency_overrides[current_principal] = who
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def _entries(rt: Runtime) -> tuple[uuid.UUID, str]:
    item_id, case = uuid.uuid4(), f"05.09.04-G01-{uuid.uuid4().int % 10**6}-26"
    sender = f"borger-{item_id.hex[:6]}@example.dk"
    async with rt.uow() as uow:
        uow.session.add(Item(id=item_id, correlation_id=uuid.uuid4(), channel="email",
                             mailbox="post", source_ref=str(item_id), state="done",
                             sender=sender, personal_data=True,
                             entities=_cpr_entities()))
        uow.session.add(Receipt(item_id=item_id, message_id=f"<r-{item_id}@x>",
                                recipient=sender, status="pending", attempts=2,
                                last_error="TransientError: SMTP 451"))
        for action, clerk in (("routed", None), ("journalised", "ALA"), ("receipt_sent", None)):
            await audit.append(uow.session, action=action, actor="journal", item_id=item_id,
                               unit="parkering", clerk=clerk, case_number=case, sender=sender,
                               details={"n": action})
        await uow.commit()
    await rt.chain_audit()
    return item_id, sender


async def test_filters_paging_and_csv(app: FastAPI, runtime: Runtime) -> None:
    item_id, sender = await _entries(runtime)
    async with _client(app, {"auditor"}) as api:  # the audit log is for auditors only
        by_sender = (await api.get("/api/v1/audit/entries",
                                   params={"sender": sender.upper()})).json()
        assert by_sender["total"] == 3
        case = by_sender["entries"][0]["case_number"]
        assert (await api.get("/api/v1/audit/entries", params={
            "clerk": "ALA", "case_number": case})).json()["total"] == 1
        page = (await api.get("/api/v1/audit/entries", params={
            "item_id": str(item_id), "limit": 2, "offset": 2})).json()
        assert [e["action"] for e in page["entries"]] == ["receipt_sent"]
        assert (await api.get("/api/v1/audit/entries", params={
            "item_id": str(item_id), "action": "routed", "unit": "parkering",
            "date_from": "2000-01-01T00:00:00Z"})).json()["total"] == 1
        r = await api.get("/api/v1/audit/entries.csv", params={"item_id": str(item_id)})
        assert r.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert [row["action"] for row in rows] == ["routed", "journalised", "receipt_sent"]
        assert rows[1]["clerk"] == "ALA" and '"n": "journalised"' in rows[1]["details"]
        status = (await api.get(f"/api/v1/items/{item_id}/receipt")).json()
        assert (status["status"], status["attempts"]) == ("pending", 2)
        assert "451" in status["last_error"]


async def test_cpr_query_is_for_auditors_only_and_audited(app: FastAPI,
                                                          runtime: Runtime) -> None:
    item_id, _ = await _entries(runtime)
    async with _client(app, {"reader"}) as api:
        assert (await api.post("/api/v1/audit/cpr", json={"cpr": CPR})).status_code == 403
    async with _client(app, {"auditor"}) as api:
        found = (await api.post("/api/v1/audit/cpr", json={"cpr": CPR})).json()
        assert {e["item_id"] for e in found["entries"]} >= {str(item_id)}
        assert (await api.post("/api/v1/audit/cpr", json={"cpr": "12"})).status_code == 422
        other = (await api.post("/api/v1/audit/cpr", json={"cpr": "0101904321"})).json()
        assert str(item_id) not in {e["item_id"] for e in other["entries"]}
    await runtime.chain_audit()
    async with _client(app, {"auditor"}) as api:
        logged = (await api.get("/api/v1/audit/entries",
                                params={"action": "audit_cpr_query"})).json()
    mine = [e for e in logged["entries"] if e["actor"] == "revisor1"]
    assert mine and all(CPR not in str(e) and "010190" not in str(e) for e in mine)
