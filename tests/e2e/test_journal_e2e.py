"""Journalising end to end: mails in dovecot IMAP, routed, answered at the SMTP test server,
journalised through the SBSYS or GetOrganized test server and found again through the audit
API, on RabbitMQ and PostgreSQL. Then a second batch while the ESDH is down for a while (and
loses answers when it comes back): every receipt and every document exactly once.

Each batch also has a digital form submitted through the forms API (a bearer client).
The services run as one process (`postfordeler run all`) to stay within the time budget;
tests/e2e/test_pipeline.py runs them as separate processes.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from postfordeler.demo.mailbox import DemoMessage, demo_messages
from services.journal.receipt_text import reference
from shared.auth import Role, create_key
from shared.contracts import TERMINAL_STATES
from shared.db import create_engine, session_factory
from shared.db.models import Item
from tests.conftest import async_wait_for
from tests.e2e.conftest import IMAP_USER, Processes, remove_topology, service_env
from tests.support import getorganized_server as gos
from tests.support import sbsys_server as sbs
from tests.support.dovecot import DovecotServer
from tests.support.getorganized_server import GetOrganizedServer, getorganized_server  # noqa: F401
from tests.support.sbsys_server import SbsysServer, sbsys_server  # noqa: F401
from tests.support.smtp import SmtpServer

pytestmark = pytest.mark.slow
Server = SbsysServer | GetOrganizedServer
DOWN = 10**6  # "down until told otherwise"
MATCHED_CASE = "02.34.02-P19-412-26"  # the demo mail answering a building case
FORM_ID, FORM_TITLE, FORM_SECRET = "bestil-storskrald", "Bestil afhentning af storskrald", "s3"
FORMS_YAML = f"""forms:
  - form_id: {FORM_ID}
    title: {FORM_TITLE}
    route: affald
    kle: "07.18.10"
    journal: new_case
    fields:
      - {{name: navn, required: true}}
      - {{name: email, type: email, required: true}}
      - {{name: adresse, required: true}}
      - {{name: genstande, type: text}}
    clients:
      - {{id: selvbetjening, auth: bearer, secret_env: E2E_FORM_SECRET}}
"""
# what each batch's form submission should become: (subject, state, unit), with a receipt
FORM_EXPECTED = (FORM_TITLE, "done", "affald")


def _batch(plain: int) -> list[DemoMessage]:
    """`plain` ordinary demo mails and the HTML mail with an attachment (fresh Message-IDs)."""
    messages = demo_messages(plain + 5)
    return [*messages[:plain], next(m for m in messages if m.note == "HTML with attachment")]


def _configure(tenant: Path, kind: str, server: Server) -> dict[str, str]:
    """Point the tenant at the ESDH test server; the environment holding its secret."""
    (tenant / "forms.yaml").write_text(FORMS_YAML, encoding="utf-8")
    org = tenant / "org.yaml"
    org.write_text(org.read_text(encoding="utf-8").replace("esdh: local", f"esdh: {kind}"),
                   encoding="utf-8")
    if isinstance(server, SbsysServer):
        server.add_case(MATCHED_CASE, "Byggetilladelse, carport")
        (tenant / "esdh.yaml").write_text(
            f"sbsys: {{base_url: '{server.url}', token_url: '{server.token_url}', "
            f"client_id: {sbs.CLIENT_ID}, client_secret_env: E2E_SBSYS_SECRET, "
            "template_id: 1, timeout: 5}\n", encoding="utf-8")
        return {"E2E_SBSYS_SECRET": sbs.CLIENT_SECRET, "E2E_FORM_SECRET": FORM_SECRET}
    (tenant / "esdh.yaml").write_text(
        f"getorganized: {{base_url: '{server.url}', username: {gos.USERNAME}, "
        "password_env: E2E_GO_PASSWORD, timeout: 5}\n", encoding="utf-8")
    return {"E2E_GO_PASSWORD": gos.PASSWORD, "E2E_FORM_SECRET": FORM_SECRET}


def _filed(server: Server) -> Counter[str]:
    """How many documents the ESDH holds per item reference (the original .eml or form .json
    is the document; GetOrganized files attachments beside it)."""
    if isinstance(server, SbsysServer):
        names = [f["Navn"] for d in server.documents for f in d["Filer"][:1]]
    else:
        names = [d["FileName"] for d in server.documents]
    return Counter(_ref(n) for n in names if n.endswith((".eml", ".json")) and "PF-" in n)


def _doc_ids(server: Server) -> dict[str, str]:
    """Item reference -> the ESDH's id of its document."""
    # The original is filed as PF-<ref>.eml (a mail) or PF-<ref>.json (a form submission).
    if isinstance(server, SbsysServer):
        return {_ref(d["Filer"][0]["Navn"]): str(d["Id"]) for d in server.documents}
    return {_ref(d["FileName"]): str(d["DocId"]) for d in server.documents
            if d["FileName"].endswith((".eml", ".json")) and "PF-" in d["FileName"]}


def _ref(name: str) -> str:
    return name.rsplit("PF-", 1)[1].removesuffix(".eml").removesuffix(".json")


def _subject(m: DemoMessage) -> str:
    return str(email.message_from_bytes(m.raw, policy=email.policy.default)["Subject"])


def _receipts(smtp: SmtpServer) -> Counter[str]:
    ids = (email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"]
           for raw in smtp.raw_messages())
    return Counter(i for i in ids if i and i.startswith("<receipt-"))


async def _auditor_key(db_url: str) -> str:
    engine = create_engine(db_url)
    try:
        async with session_factory(engine)() as s:
            issued = await create_key(s, name="e2e-revisor", role=Role.AUDITOR)
            await s.commit()
            return issued.key
    finally:
        await engine.dispose()


async def _items(db_url: str) -> list[Any]:
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(select(Item))).all())
    finally:
        await engine.dispose()


async def _all_terminal(procs: Processes, db_url: str, expected: int) -> bool:
    procs.check_alive()
    items = await _items(db_url)
    return len(items) == expected and all(i.state in TERMINAL_STATES for i in items)


async def _settled(procs: Processes, db_url: str, smtp: SmtpServer,
                   messages: list[DemoMessage], forms: int) -> list[Any]:
    await async_wait_for(lambda: _all_terminal(procs, db_url, len(messages) + forms),
                         timeout=90, interval=0.5)
    due = sum(m.receipt for m in messages) + forms
    await async_wait_for(lambda: _true(sum(_receipts(smtp).values()) >= due), timeout=30)
    return await _items(db_url)


async def _true(value: bool) -> bool:
    return value


def _check(items: list[Any], messages: list[DemoMessage], forms: int, server: Server,
           smtp: SmtpServer) -> list[Any]:
    """Each item as expected, each receipt once, each journalised item one document."""
    by_subject = Counter((_subject(m), m.expect_state, m.expect_unit) for m in messages)
    by_subject[FORM_EXPECTED] += forms
    got = Counter((i.subject, i.state, i.unit if i.state == "done" else None) for i in items)
    assert got == by_subject, (got, by_subject)
    receipts = _receipts(smtp)
    assert set(receipts.values()) == {1}, receipts.most_common(3)
    assert len(receipts) == sum(m.receipt for m in messages) + forms
    journalised = [i for i in items if i.case_number and i.state == "done"]
    # vej-park routes without journalising; everything else that is done has a case
    assert len(journalised) == forms + sum(
        m.expect_state == "done" and m.expect_unit != "vej-park" for m in messages)
    filed = _filed(server)
    assert filed == Counter({reference(i.id).removeprefix("PF-"): 1 for i in journalised}), (
        filed.most_common(3))
    return journalised


async def _found_in_audit(api_port: int, key: str, journalised: list[Any],
                          server: Server) -> None:
    doc_ids = _doc_ids(server)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}",
                                 headers={"Authorization": f"Bearer {key}"}) as api:
        for it in journalised:
            async def chained(it: Any = it) -> bool:
                r = await api.get("/api/v1/audit/entries",
                                  params={"item_id": str(it.id), "action": "journalised"})
                assert r.status_code == 200, r.text
                return bool(r.json()["entries"])

            await async_wait_for(chained, timeout=15)
            r = await api.get("/api/v1/audit/entries",
                              params={"case_number": it.case_number, "action": "journalised"})
            entries = [e for e in r.json()["entries"] if e["item_id"] == str(it.id)]
            assert len(entries) == 1, entries
            assert entries[0]["details"]["document_id"] == doc_ids[
                reference(it.id).removeprefix("PF-")]
            r = await api.get(f"/api/v1/items/{it.id}/receipt")
            assert r.status_code == 200 and r.json()["status"] == "sent", r.text
        r = await api.get("/api/v1/audit/verify")
        assert r.status_code == 200 and r.json()["ok"], r.text


async def _submit_form(api_port: int, n: int) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}") as api:
        r = await api.post(f"/api/v1/forms/{FORM_ID}/submissions",
                           headers={"Authorization": f"Bearer {FORM_SECRET}",
                                    "Idempotency-Key": f"e2e-{n}"},
                           json={"fields": {"navn": "Signe Bjerre", "email": "signe@example.org",
                                            "adresse": f"Skovvej {n}",
                                            "genstande": "sofa, reol"}})
        assert r.status_code == 202, r.text


async def _api_up(port: int) -> bool:
    try:
        async with httpx.AsyncClient() as api:
            return (await api.get(f"http://127.0.0.1:{port}/health/ready")).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.parametrize("kind", ["sbsys", "getorganized"])
async def test_mail_is_journalised_once_through_the_esdh_even_when_it_fails(
        kind: str, request: pytest.FixtureRequest, tmp_path: Path, tenant: Path,
        dovecot: DovecotServer, smtp_server: SmtpServer, fresh_pg: str, rabbit_url: str,
        api_port: int) -> None:
    server: Server = request.getfixturevalue(f"{kind}_server")
    env = service_env(tmp_path, tenant, database_url=fresh_pg, amqp_url=rabbit_url,
                      smtp_port=smtp_server.port, api_port=api_port)
    env.update(_configure(tenant, kind, server))
    env["POSTFORDELER_ESDH_TIMEOUT"] = "5"
    key = await _auditor_key(fresh_pg)
    procs = Processes(env, tmp_path)
    try:
        procs.start("all")
        await async_wait_for(lambda: _api_up(api_port), timeout=60, interval=0.3)
        # 1. The ESDH is up.
        first = _batch(9)
        for m in first:
            dovecot.append(IMAP_USER, "INBOX", m.raw)
        await _submit_form(api_port, 1)
        items = await _settled(procs, fresh_pg, smtp_server, first, 1)
        journalised = _check(items, first, 1, server, smtp_server)
        await _found_in_audit(api_port, key, journalised, server)

        # 2. Down while a second batch arrives; back after a while, losing two answers.
        server.faults.down = DOWN
        second = _batch(9)
        for m in second:
            dovecot.append(IMAP_USER, "INBOX", m.raw)
        await _submit_form(api_port, 2)
        await _submit_form(api_port, 2)  # sent again: the same item
        await async_wait_for(lambda: _true(DOWN - server.faults.down >= 8), timeout=60)
        await asyncio.sleep(2.0)
        assert all(i.state != "failed" for i in await _items(fresh_pg))
        with server.faults.lock:
            server.faults.down, server.faults.lose = 0, 2
        items = await _settled(procs, fresh_pg, smtp_server, first + second, 2)
        await asyncio.sleep(1.0)  # a second receipt or document would arrive now
        assert server.faults.lose == 0  # two answers were lost, and their calls repeated
        journalised = _check(await _items(fresh_pg), first + second, 2, server, smtp_server)
        await _found_in_audit(api_port, key, journalised, server)
        assert imap_empty(dovecot)
    except BaseException:
        print(procs.tail())
        raise
    finally:
        procs.stop()
        await _remove_queues(env)


def imap_empty(imap: DovecotServer) -> bool:
    return imap.count(IMAP_USER, "INBOX") == 0


async def _remove_queues(env: dict[str, str]) -> None:
    """remove_topology, plus the queues of the consumers it does not know (ESDH filing,
    delivery to units)."""
    from shared.bus import RetryPolicy
    from shared.bus._rabbitmq import RabbitBus

    await remove_topology(env)
    bus = RabbitBus(env["POSTFORDELER_AMQP_URL"], exchange=env["POSTFORDELER_EXCHANGE"],
                    policy=RetryPolicy(5, float(env["POSTFORDELER_RETRY_BASE_DELAY"]), 30.0))
    try:
        await bus.connect()
        await bus.delete_topology(("journal-esdh", "delivery"))
    finally:
        await bus.close()
