"""Digital form submissions through the API, on SQLite and PostgreSQL: HMAC and bearer
clients, schema validation, multipart attachments, idempotency, durable storage."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import select

from services.api import create_app
from services.ingest.extraction import ExtractionService
from services.ingest.extractor import Extractor
from services.ingest.limits import Limits
from services.ingest.workers import WorkerPool
from shared.blobs import FileBlobStore
from shared.contracts import ItemEvent, ItemExtracted, ItemReceived, parse_event
from shared.db import Item, ItemTransition, OutboxMessage
from shared.db.engine import create_engine, session_factory
from shared.db.uow import uow_factory
from shared.settings import DEMO_TENANT_DIR, Settings
from tests.conftest import unavailable
from tests.integration.test_scans import scan_png
from tests.unit.test_extract import docx_of, text_pdf

FORM = {
    "form_id": "anmeld-rotter", "title": "Anmeldelse af rotter", "route": "natur-miljoe",
    "kle": "09.13.00",
    "fields": [
        {"name": "navn", "required": True, "max_length": 100},
        {"name": "email", "type": "email", "required": True},
        {"name": "adresse", "required": True},
        {"name": "set_dato", "type": "date"},
        {"name": "antal", "type": "integer"},
        {"name": "sted", "choices": ["have", "kaelder", "kloak"]},
        {"name": "beskrivelse", "type": "text", "max_length": 2000},
    ],
    "clients": [{"id": "selvbetjening", "auth": "hmac", "secret_env": "PF_TEST_FORM_HMAC"},
                {"id": "portal", "auth": "bearer", "secret_env": "PF_TEST_FORM_TOKEN"}],
    "max_attachments": 2, "max_attachment_bytes": 1000,
}
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
WITH_FILES = {**FORM, "form_id": "klage", "title": "Klage", "max_attachments": 4,
              "max_attachment_bytes": 1_000_000,
              "attachment_types": ["application/pdf", DOCX, "image/png", "text/plain"]}
GOOD = {"navn": "Søren Ørsted", "email": "soeren@example.dk", "adresse": "Åvej 1",
        "set_dato": "2026-11-20", "antal": 3, "sted": "have",
        "beskrivelse": "Rotter ved kompostbunken"}


@pytest.fixture
async def api(db_url: str, tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    tenant = tmp_path / "tenant"
    tenant.mkdir()
    shutil.copy(DEMO_TENANT_DIR / "org.yaml", tenant / "org.yaml")
    (tenant / "forms.yaml").write_text(yaml.safe_dump({"forms": [FORM, WITH_FILES]},
                                                      allow_unicode=True))
    monkeypatch.setenv("PF_TEST_FORM_HMAC", "hmac-secret")
    monkeypatch.setenv("PF_TEST_FORM_TOKEN", "portal-token")
    settings = Settings(data_dir=tmp_path / "data", database_url=db_url, tenant_dir=tenant)
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        client.app_settings = settings  # type: ignore[attr-defined]
        yield client


def signed(body: bytes, secret: str = "hmac-secret") -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Postfordeler-Client": "selvbetjening",
            "X-Postfordeler-Signature": f"sha256={digest}", "Content-Type": "application/json"}


URL = "/api/v1/forms/anmeld-rotter/submissions"


async def stored(client: httpx.AsyncClient, item_id: str) -> tuple[Item, list[str], ItemEvent]:
    settings: Settings = client.app_settings  # type: ignore[attr-defined]
    engine = create_engine(settings.db_url)
    try:
        async with session_factory(engine)() as s:
            item = await s.get(Item, uuid.UUID(item_id))
            assert item is not None
            states = list((await s.execute(select(ItemTransition.to_state).where(
                ItemTransition.item_id == item.id).order_by(ItemTransition.id))).scalars())
            [payload] = (await s.execute(select(OutboxMessage.payload).where(
                OutboxMessage.item_id == item.id))).scalars()
        event = parse_event(payload)
        assert isinstance(event, ItemExtracted | ItemReceived)
        return item, states, event
    finally:
        await engine.dispose()


async def test_hmac_submission_is_stored_and_extracted(api: httpx.AsyncClient) -> None:
    body = json.dumps({"fields": GOOD}).encode()
    response = await api.post(URL, content=body, headers=signed(body) | {"Idempotency-Key": "k1"})
    assert response.status_code == 202, response.text
    item_id = response.json()["item_id"]
    item, states, event = await stored(api, item_id)
    assert isinstance(event, ItemExtracted)
    assert (item.channel, item.mailbox, item.subject, item.sender) == (
        "form", "form:anmeld-rotter", "Anmeldelse af rotter", "soeren@example.dk")
    assert states == ["received", "extracted"] and item.state == "extracted"
    assert event.channel == "form" and event.sender.address == "soeren@example.dk"
    settings: Settings = api.app_settings  # type: ignore[attr-defined]
    from shared.blobs import FileBlobStore
    blobs = FileBlobStore(settings.blobs_path)
    text = blobs.get_sync(event.text).decode()
    assert "navn: Søren Ørsted" in text and "set_dato: 2026-11-20" in text
    raw = json.loads(blobs.get_sync(item.raw_sha256 or ""))
    assert raw["fields"] == GOOD and raw["client"] == "selvbetjening"

    # the same key again: the same item, nothing new
    again = await api.post(URL, content=body, headers=signed(body) | {"Idempotency-Key": "k1"})
    assert again.status_code == 202
    assert again.json() == {"item_id": item_id, "duplicate": True}


async def test_authentication(api: httpx.AsyncClient) -> None:
    body = json.dumps({"fields": GOOD}).encode()
    bad = signed(body, secret="wrong")
    assert (await api.post(URL, content=body, headers=bad)).status_code == 401
    tampered = body.replace(b"3", b"4")
    assert (await api.post(URL, content=tampered, headers=signed(body))).status_code == 401
    assert (await api.post(URL, json={"fields": GOOD})).status_code == 401
    bearer = {"Authorization": "Bearer portal-token"}
    response = await api.post(URL, json={"fields": GOOD}, headers=bearer)
    assert response.status_code == 202
    wrong = {"Authorization": "Bearer hmac-secret"}  # another client's secret, wrong scheme
    assert (await api.post(URL, json={"fields": GOOD}, headers=wrong)).status_code == 401
    assert (await api.post("/api/v1/forms/findes-ikke/submissions", json={},
                           headers=bearer)).status_code == 404


async def test_schema_validation(api: httpx.AsyncClient) -> None:
    bearer = {"Authorization": "Bearer portal-token"}
    bad = GOOD | {"email": "ikke-en-adresse", "set_dato": "20/11/2026", "antal": "tre",
                  "sted": "loftet", "ukendt": "x", "navn": "x" * 101}
    del bad["adresse"]
    response = await api.post(URL, json={"fields": bad}, headers=bearer)
    assert response.status_code == 422
    errors = {e["field"]: e["error"] for e in response.json()["detail"]}
    assert set(errors) == {"email", "set_dato", "antal", "sted", "ukendt", "navn", "adresse"}
    assert errors["adresse"] == "required" and errors["ukendt"] == "unknown field"
    for payload in (b"not json", b"[1, 2]", b'{"fields": [1]}', b"\xff\xfe"):
        response = await api.post(URL, content=payload, headers=bearer | {
            "Content-Type": "application/json"})
        assert response.status_code == 422, payload


async def test_multipart_with_attachments(api: httpx.AsyncClient) -> None:
    submission = json.dumps({"fields": GOOD})
    request = httpx.Request("POST", "http://api" + URL, data={"submission": submission},
                            files=[("attachments", ("foto.png", b"\x89PNG fake", "image/png")),
                                   ("attachments", ("note.txt", "Rotter æøå".encode(),
                                                    "text/plain"))])
    body = request.read()
    headers = signed(body) | {"Content-Type": request.headers["Content-Type"]}
    response = await api.post(URL, content=body, headers=headers)
    assert response.status_code == 202, response.text
    item, states, received = await stored(api, response.json()["item_id"])
    # with attachments the extractor reads them, as a mail's: the API stops at received
    assert isinstance(received, ItemReceived) and states == ["received"]
    raw = json.loads(FileBlobStore(api.app_settings.blobs_path)  # type: ignore[attr-defined]
                     .get_sync(received.raw))
    assert [(a["filename"], a["content_type"]) for a in raw["attachments"]] == [
        ("foto.png", "image/png"), ("note.txt", "text/plain")]

    too_big = httpx.Request("POST", "http://api" + URL, data={"submission": submission},
                            files=[("attachments", ("stor.pdf", b"x" * 1001,
                                                    "application/pdf"))])
    body = too_big.read()
    response = await api.post(URL, content=body, headers=signed(body) | {
        "Content-Type": too_big.headers["Content-Type"]})
    assert response.status_code == 413
    wrong_type = httpx.Request("POST", "http://api" + URL, data={"submission": submission},
                               files=[("attachments", ("x.exe", b"MZ", "application/x-msdos"))])
    body = wrong_type.read()
    response = await api.post(URL, content=body, headers=signed(body) | {
        "Content-Type": wrong_type.headers["Content-Type"]})
    assert response.status_code == 415


async def test_attachment_text_reaches_the_extracted_item(api: httpx.AsyncClient) -> None:
    """A PDF's text layer, a Word document and a photographed page (OCR) end as the
    attachments' text on ItemExtracted, where the classifier reads it."""
    if shutil.which("tesseract") is None:
        unavailable("tesseract")
    files = [("attachments", ("brev.pdf", text_pdf(["Sag 2023-004512 om parkering"]),
                              "application/pdf")),
             ("attachments", ("klage.docx", docx_of(["Nummerplade AB 12 345"]), DOCX)),
             ("attachments", ("foto.png", scan_png("Rottespor i haven"), "image/png"))]
    request = httpx.Request("POST", "http://api/api/v1/forms/klage/submissions",
                            data={"submission": json.dumps({"fields": GOOD})}, files=files)
    body = request.read()
    response = await api.post("/api/v1/forms/klage/submissions", content=body, headers=signed(
        body) | {"Content-Type": request.headers["Content-Type"]})
    assert response.status_code == 202, response.text
    item, _, received = await stored(api, response.json()["item_id"])
    assert isinstance(received, ItemReceived) and received.channel == "form"

    # the ingest extractor, with its worker pool and tesseract, takes the event
    settings: Settings = api.app_settings  # type: ignore[attr-defined]
    blobs = FileBlobStore(settings.blobs_path)
    service = ExtractionService(Limits(), WorkerPool(2, 2048))
    engine = create_engine(settings.db_url)
    try:
        async with uow_factory(session_factory(engine))() as uow:
            await Extractor(blobs, service).handle(received, uow)
            await uow.commit()
        async with session_factory(engine)() as s:
            after = await s.get(Item, item.id)
            assert after is not None and after.state == "extracted"
    finally:
        await service.pool.close()
        await engine.dispose()
    (extracted,) = uow.emitted
    assert isinstance(extracted, ItemExtracted)
    assert extracted.subject == "Klage" and extracted.sender.address == "soeren@example.dk"
    assert "navn: Søren Ørsted" in blobs.get_sync(extracted.text).decode()
    texts = {a.filename: blobs.get_sync(a.text).decode() if a.text else None
             for a in extracted.attachments}
    assert set(texts) == {"brev.pdf", "klage.docx", "foto.png"}
    assert "2023-004512" in (texts["brev.pdf"] or "")
    assert "AB 12 345" in (texts["klage.docx"] or "")
    assert "Rottespor" in (texts["foto.png"] or "")
    (photo,) = [a for a in extracted.attachments if a.filename == "foto.png"]
    assert photo.pages and photo.pages[0].source == "ocr" and not photo.problem
