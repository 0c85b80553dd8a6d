"""Rule actions taking effect in the journal, on SQLite and PostgreSQL with a real SMTP server:
a named receipt template's text is what the sender gets (a removed one falls back, recorded on
the item), a new case in the local archive has the rule's title and KLE (never a CPR number),
`journal: none` files nothing, the rules API and `rules import` refuse a template the tenant
does not have; and one rule's actions through classifier, router, journal and delivery."""

from __future__ import annotations

import email
import email.policy
import uuid
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from postfordeler.cli import app as cli
from services import classifier, delivery, journal, router
from services.journal import Journal, LocalArchive, Receipts, make_sender
from shared.auth import Role
from shared.bus import RetryPolicy
from shared.bus._memory import MemoryBus
from shared.contracts import ItemExtracted, ItemRouted, ItemState, JournalAction, RouteOutcome
from shared.db.models import AuditEntry, EsdhCase, EsdhDocument, Item
from shared.rules import RuleSet, store
from shared.runtime import Runtime
from shared.settings import Settings
from tests.conftest import async_wait_for
from tests.integration.test_access import Api, make_tenant
from tests.integration.test_rules_api import ROTTER, RULES, api, fresh_db  # noqa: F401
from tests.support.smtp import SmtpServer, smtp_server  # noqa: F401  (fixture)

NAMED_TXT = """{% extends "receipt.txt.j2" %}
{% block next %}Klager over parkeringsafgifter behandles af klageteamet inden for 4 uger.
{% endblock %}"""
NAMED_HTML = "<p>Klageteamet har modtaget {{ subject }} ({{ reference }}).</p>"


def tenant_with_templates(directory: Path) -> Path:
    tenant = make_tenant(directory)
    named = tenant / "receipts" / "named"
    named.mkdir(parents=True)
    (named / "parkering-klage.txt.j2").write_text(NAMED_TXT, encoding="utf-8")
    (named / "parkering-klage.html.j2").write_text(NAMED_HTML, encoding="utf-8")
    (named / "kun-tekst.txt.j2").write_text("Kun tekst: {{ reference }}\n", encoding="utf-8")
    return tenant


@pytest.fixture
async def runtime(db_url: str, tmp_path: Path,
                  smtp_server: SmtpServer) -> AsyncIterator[Runtime]:  # noqa: F811
    rt = Runtime(Settings(
        data_dir=tmp_path / "data", database_url=db_url,  # type: ignore[arg-type]
        amqp_url="memory://", tenant_dir=tenant_with_templates(tmp_path / "tenant"),  # type: ignore[arg-type]
        smtp_host="127.0.0.1", smtp_port=smtp_server.port, smtp_timeout=5.0))
    await rt.start()
    yield rt
    await rt.stop()


async def _routed(rt: Runtime, *, subject: str = "Klage over afgift", **decided: Any
                  ) -> ItemRouted:
    item_id = uuid.uuid4()
    async with rt.uow() as uow:
        uow.session.add(Item(
            id=item_id, correlation_id=uuid.uuid4(), channel="email", mailbox="post",
            source_ref=f"t-{item_id}", message_id=f"<{item_id}@mail.example.dk>",
            raw_sha256="ab" * 32, subject=subject, sender="borger@example.dk", state="routed",
            entities=[]))
        await uow.commit()
    return ItemRouted(correlation_id=uuid.uuid4(), producer="router", item_id=item_id,
                      outcome=RouteOutcome.ROUTED, unit="parkering", clerk="ALA",
                      **{"journal": JournalAction.NEW_CASE, "kle": "05.09.04", "receipt": True,
                         **decided})


def _parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


async def test_the_named_template_is_what_the_sender_gets(
        runtime: Runtime, smtp_server: SmtpServer) -> None:  # noqa: F811
    receipts = Receipts(runtime.uow, runtime.tenant, make_sender(runtime.settings))
    event = await _routed(runtime, receipt_template="parkering-klage")
    assert await receipts.deliver(event)
    [received] = smtp_server.wait_for(1)
    msg = _parse(received.raw)
    assert received.rcpt_tos == ("borger@example.dk",)
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    assert "inden for 4 uger" in text.get_content()
    assert "Tak for din henvendelse" in text.get_content()  # the block it did not override
    ref = f"PF-{event.item_id.hex[:10].upper()}"
    assert html.get_content().strip() == (
        f"<p>Klageteamet har modtaget Klage over afgift ({ref}).</p>")
    # without an HTML file the named receipt is plain text only
    plain = await _routed(runtime, receipt_template="kun-tekst")
    assert await receipts.deliver(plain)
    msg = _parse(smtp_server.wait_for(2)[1].raw)
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content().strip() == f"Kun tekst: PF-{plain.item_id.hex[:10].upper()}"


async def test_a_removed_template_falls_back_and_is_recorded_on_the_item(
        runtime: Runtime, smtp_server: SmtpServer) -> None:  # noqa: F811
    receipts = Receipts(runtime.uow, runtime.tenant, make_sender(runtime.settings))
    event = await _routed(runtime, receipt_template="findes-ikke")
    assert await receipts.deliver(event)
    msg = _parse(smtp_server.wait_for(1)[0].raw)
    body = msg.get_body(("plain",))
    assert body is not None and "Tak for din henvendelse" in body.get_content()
    await runtime.chain_audit()
    async with runtime.uow() as uow:
        [details] = (await uow.session.execute(select(AuditEntry.details).where(
            AuditEntry.item_id == event.item_id,
            AuditEntry.action == "receipt_template_missing"))).scalars().all()
    assert details == {"template": "findes-ikke", "used": "default"}


async def _journalise(rt: Runtime, event: ItemRouted) -> Item:
    async with rt.uow() as uow:
        await Journal(rt.tenant, LocalArchive).handle(event, uow)
        await uow.commit()
    async with rt.uow() as uow:
        item = await uow.session.get(Item, event.item_id)
        assert item is not None
        return item


async def test_local_archive_new_case_title_and_kle_and_journal_none(runtime: Runtime) -> None:
    event = await _routed(runtime, subject="Afgift, mit cpr er 010190-1234", kle="05.09.06",
                          receipt=False, sensitive=True,
                          case_title="Parkeringsafgift AB12345 for 0101901234\tfra borger")
    item = await _journalise(runtime, event)
    assert item.state == "done" and item.case_number is not None
    assert item.case_number.startswith("05.09.06-G01-")
    async with runtime.uow() as uow:
        case = (await uow.session.execute(select(EsdhCase).where(
            EsdhCase.case_number == item.case_number))).scalar_one()
        doc = (await uow.session.execute(select(EsdhDocument).where(
            EsdhDocument.item_id == item.id))).scalar_one()
    assert (case.title, case.kle) == ("Parkeringsafgift AB12345 for [CPR-nr.] fra borger",
                                      "05.09.06")
    assert doc.title == "Afgift, mit cpr er [CPR-nr.]"
    await runtime.chain_audit()
    async with runtime.uow() as uow:
        details = (await uow.session.execute(select(AuditEntry.details).where(
            AuditEntry.item_id == item.id, AuditEntry.action == "journalised"))).scalar_one()
        decided = (await uow.session.execute(select(AuditEntry.details).where(
            AuditEntry.item_id == item.id, AuditEntry.action == "routed"))).scalar_one()
    assert details["kle"] == "05.09.06" and details["confidential"] is True
    assert decided["sensitive"] is True
    # journal: none -- done, nothing filed
    nothing = await _routed(runtime, journal=JournalAction.NONE, receipt=False)
    item = await _journalise(runtime, nothing)
    assert (item.state, item.case_number) == ("done", None)
    async with runtime.uow() as uow:
        assert (await uow.session.execute(select(func.count()).select_from(EsdhDocument).where(
            EsdhDocument.item_id == item.id))).scalar_one() == 0


async def test_rules_api_refuses_a_receipt_template_the_tenant_lacks(api: Api) -> None:  # noqa: F811
    named = api.settings.tenant_dir / "receipts" / "named"
    named.mkdir(parents=True)
    (named / "rotter.txt.j2").write_text("Tak. {{ reference }}\n", encoding="utf-8")
    admin = await api.key(Role.ADMINISTRATOR)
    then: dict[str, Any] = dict(ROTTER["then"])  # type: ignore[call-overload]
    unknown = {**ROTTER, "then": {**then, "receipt_template": "skadedyr"}}
    r = await api.client.put(f"{RULES}/Rotter", headers=admin, json=unknown)
    assert r.status_code == 422, r.text
    [problem] = r.json()["detail"]
    assert problem["loc"] == ["body", "then", "receipt_template"]
    assert "receipts/named/skadedyr.txt.j2" in problem["msg"]
    known = {**ROTTER, "then": {**then, "receipt_template": "rotter"}}
    r = await api.client.put(f"{RULES}/Rotter", headers=admin, json=known)
    assert r.status_code == 200, r.text
    rule = (await api.client.get(f"{RULES}/Rotter", headers=admin)).json()["rule"]
    assert rule["then"]["receipt_template"] == "rotter"


def test_rules_import_refuses_a_receipt_template_the_tenant_lacks(
        fresh_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811


    monkeypatch.setenv("POSTFORDELER_DATABASE_URL", fresh_db)
    monkeypatch.setenv("POSTFORDELER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("POSTFORDELER_TENANT_DIR", str(tenant_with_templates(tmp_path / "t")))
    path = tmp_path / "rules.yaml"
    rule = ("rules:\n  - {name: P, when: {entity: licence_plate},\n"
            "     then: {route: parkering, receipt_template: %s}}\n")
    path.write_text(rule % "ukendt", encoding="utf-8")
    runner = CliRunner()
    refused = runner.invoke(cli, ["rules", "import", str(path)])
    assert refused.exit_code == 2 and "rules.0.then.receipt_template" in refused.output
    path.write_text(rule % "parkering-klage", encoding="utf-8")
    imported = runner.invoke(cli, ["rules", "import", str(path)])
    assert imported.exit_code == 0, imported.output


async def test_a_rules_actions_end_to_end(db_url: str, tmp_path: Path,
                                          smtp_server: SmtpServer) -> None:  # noqa: F811
    """Classifier, router, journal and delivery in one process on the in-memory bus: one rule
    decides where, the case title and KLE, the receipt template and the sensitive mark."""
    settings = Settings(
        data_dir=tmp_path / "data", database_url=db_url,  # type: ignore[arg-type]
        tenant_dir=tenant_with_templates(tmp_path / "tenant"),  # type: ignore[arg-type]
        smtp_host="127.0.0.1", smtp_port=smtp_server.port, smtp_timeout=5.0, rules_refresh=0)
    rt = Runtime(settings, bus=MemoryBus(policy=RetryPolicy(3, 0.01, 0.05), prefetch=4))
    await rt.start()
    try:
        rule = {"name": "Klage over afgift", "priority": 0, "when": {"phrase": "klager over"},
                "then": {"route": "parkering", "journal": "new_case", "kle": "05.09.06",
                         "case_title": "Klage {plate}: {subject}",
                         "receipt_template": "parkering-klage", "sensitive": True}}
        async with rt.uow() as uow:
            await store.save(uow.session, RuleSet.parse({"rules": [rule]}), author="ops")
            await uow.commit()
        for service in (classifier, router, journal, delivery):
            await service.start(rt)
        subject = f"Afgift AB12345, cpr 010190-1234 {uuid.uuid4().hex[:6]}"
        text = await rt.blobs.put(b"Jeg klager over afgiften for AB12345.", "text/plain")
        event = ItemExtracted(correlation_id=uuid.uuid4(), producer="test",
                              item_id=uuid.uuid4(), channel="email", mailbox="post",
                              subject=subject, text=text,
                              sender={"name": "Bo", "address": "bo@example.dk"})
        async with rt.uow() as uow:
            uow.session.add(Item(id=event.item_id, correlation_id=event.correlation_id,
                                 channel="email", mailbox="post",
                                 source_ref=str(event.item_id), subject=subject,
                                 sender="bo@example.dk", state=ItemState.EXTRACTED.value))
            uow.emit(event)
            await uow.commit()
        await rt.relay.publish(uow.emitted)

        async def done() -> bool:
            async with rt.uow() as uow:
                item = await uow.item(event.item_id, lock=False)
            return item.state == ItemState.DONE.value and smtp_server.count() >= 2

        await async_wait_for(done, timeout=30)
        by_recipient = {m.rcpt_tos: _parse(m.raw) for m in smtp_server.messages}
        receipt = by_recipient[("bo@example.dk",)].get_body(("plain",))
        assert receipt is not None and "inden for 4 uger" in receipt.get_content()
        notice = by_recipient[("parkering@demoby.dk",)]
        assert notice["X-Postfordeler-Sensitive"] == "yes" and b"AB12345" not in notice.as_bytes()
        async with rt.uow() as uow:
            item = await uow.item(event.item_id, lock=False)
            case = (await uow.session.execute(select(EsdhCase).where(
                EsdhCase.case_number == item.case_number))).scalar_one()
        assert case.kle == "05.09.06" and case.title == f"Klage AB12345: {subject}".replace(
            "010190-1234", "[CPR-nr.]")
    finally:
        await rt.stop()
