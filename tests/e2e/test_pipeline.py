"""One mailbox of 50 messages (a malformed one and a duplicate among them) through the whole
pipeline: each item reaches its expected terminal state, each receipt arrives once, journal
entries are found through the API, and the inbox ends empty with nothing lost."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from postfordeler.demo.mailbox import DemoMessage, demo_messages
from shared.auth import Role, create_key
from shared.contracts import TERMINAL_STATES
from shared.db import create_engine, migrate, session_factory
from shared.db.models import EsdhDocument, Item, SourceMessage
from tests.conftest import async_wait_for
from tests.e2e.conftest import (
    FOLDER_BYGGERI,
    IMAP_USER,
    Processes,
    remove_topology,
    service_env,
)
from tests.support.dovecot import DovecotServer
from tests.support.smtp import SmtpServer

pytestmark = pytest.mark.slow
N = 50
WORKERS = ("ingest", "classifier", "router", "journal")


def _msgid(raw: bytes) -> str | None:
    value = email.message_from_bytes(raw, policy=email.policy.compat32)["Message-ID"]
    return value.strip().strip("<>") if value else None


async def _counts(engine) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        total = (await conn.execute(select(func.count()).select_from(Item))).scalar_one()
        done = (await conn.execute(select(func.count()).select_from(Item).where(
            Item.state.in_([s.value for s in TERMINAL_STATES])))).scalar_one()
    return int(total), int(done)


async def _classified(engine) -> int:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(Item).where(
            Item.state.not_in(["received", "extracted"])))).scalar_one())


async def run_pipeline(procs: Processes, imap: DovecotServer, smtp: SmtpServer, db_url: str,
                       api_port: int, *, kill_classifier: bool = False) -> None:
    messages = demo_messages(N)
    for m in messages:
        imap.append(IMAP_USER, "INBOX", m.raw)
    engine = create_engine(db_url)
    try:
        if kill_classifier:
            await async_wait_for(lambda: _some_classified(engine), timeout=120)
            procs.kill("classifier")
            await asyncio.sleep(1.0)
            procs.start("classifier")

        async def all_terminal() -> bool:
            procs.check_alive()
            total, done = await _counts(engine)
            return total == N - 1 and done == total

        await async_wait_for(all_terminal, timeout=240, interval=0.5)
        await _assert_outcomes(engine, messages, smtp, imap, api_port)
    finally:
        await engine.dispose()


async def _some_classified(engine) -> bool:  # type: ignore[no-untyped-def]
    return await _classified(engine) >= 5


async def _assert_outcomes(engine, messages: list[DemoMessage], smtp: SmtpServer,  # type: ignore[no-untyped-def]
                           imap: DovecotServer, api_port: int) -> None:
    async with engine.connect() as conn:
        items = (await conn.execute(select(Item))).all()
        duplicates = (await conn.execute(select(func.count()).select_from(SourceMessage).where(
            SourceMessage.duplicate))).scalar_one()
        documents = (await conn.execute(select(EsdhDocument.item_id))).scalars().all()
    by_msgid = {(it.message_id or "").strip().strip("<>"): it for it in items}
    assert duplicates == 1
    # Every message reached exactly the state it should have.
    for m in messages:
        if m.expect_state == "duplicate":
            continue
        if m.expect_state == "failed" and _msgid(m.raw) is None:
            failed = [it for it in items if it.state == "failed"]
            assert len(failed) == 1 and failed[0].failure_reason
            continue
        it = by_msgid[_msgid(m.raw) or ""]
        assert (it.state, it.unit if m.expect_unit else None) == (m.expect_state, m.expect_unit), (
            m.note, it.decision, it.failure_reason)
    # Receipts: one per item that should have one, none twice. They are sent by their own
    # consumer, so the last ones may still be on their way when the items are done.
    # Forwards to the units' mailboxes (delivery): one per item routed to a unit.
    expected_receipts = sum(m.receipt for m in messages)
    expected_forwards = sum(it.state == "done" for it in items)

    def sent(prefix: str) -> Counter[str | None]:
        return Counter(i for i in map(_msgid, smtp.raw_messages()) if i and i.startswith(prefix))
    await async_wait_for(lambda: _true(sum(sent("receipt-").values()) >= expected_receipts
                                       and sum(sent("delivery-").values()) >= expected_forwards),
                         timeout=60)
    await asyncio.sleep(1.0)  # a duplicate would arrive now
    for prefix, expected in (("receipt-", expected_receipts), ("delivery-", expected_forwards)):
        ids = sent(prefix)
        assert all(n == 1 for n in ids.values()), ids.most_common(3)
        assert len(ids) == expected, (prefix, len(ids), expected)
    # Byggeri's items are filed in a folder of the mailbox too, each once, besides the forward.
    byggeri = {str(it.id) for it in items if it.state == "done" and it.unit == "byggeri"}
    assert byggeri, "no item went to byggeri"

    async def filed() -> bool:
        return imap.count(IMAP_USER, FOLDER_BYGGERI) >= len(byggeri)
    await async_wait_for(filed, timeout=30)
    copies = [email.message_from_bytes(raw) for raw in imap.fetch_all(IMAP_USER, FOLDER_BYGGERI)]
    assert sorted(str(c["X-Postfordeler-Item"]) for c in copies) == sorted(byggeri)
    # Journalised exactly once each, and findable through the audit API.
    assert len(documents) == len(set(documents))
    journalised = [it for it in items if it.case_number]
    assert journalised, "no item was journalised"
    async with session_factory(engine)() as s:  # the API wants credentials: an auditor's key
        key = await create_key(s, name="e2e", role=Role.AUDITOR)
        await s.commit()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}",
                                 headers={"Authorization": f"Bearer {key.key}"}) as api:
        await async_wait_for(lambda: _api_up(api), timeout=30)
        for it in journalised[:10]:
            async def found(it=it) -> bool:  # type: ignore[no-untyped-def]
                r = await api.get("/api/v1/audit/journal",
                                  params={"case_number": it.case_number})
                assert r.status_code == 200, r.text
                return any(str(it.id) == str(e.get("item_id")) for e in _entries(r.json()))

            await async_wait_for(found, timeout=10)  # chained within moments of the commit
            r = await api.get(f"/api/v1/items/{it.id}")
            assert r.status_code == 200 and r.json()["state"] == "done"
    # The inbox is empty and every message is kept in a folder.
    assert imap.count(IMAP_USER, "INBOX") == 0
    kept = sum(imap.count(IMAP_USER, f) for f in ("Postfordeler/Behandlet", "Postfordeler/Fejl"))
    assert kept == N
    assert imap.count(IMAP_USER, "Postfordeler/Fejl") == 1


async def _true(value: bool) -> bool:
    return value


def _entries(body):  # type: ignore[no-untyped-def]
    return body["entries"] if isinstance(body, dict) and "entries" in body else (
        body.get("items", body) if isinstance(body, dict) else body)


async def _api_up(api: httpx.AsyncClient) -> bool:
    try:
        return (await api.get("/health/ready")).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.parametrize("kill_classifier", [False, True], ids=["plain", "sigkill-classifier"])
async def test_separate_processes_on_rabbitmq_and_postgres(
        tmp_path: Path, tenant: Path, dovecot: DovecotServer, smtp_server: SmtpServer,
        fresh_pg: str, rabbit_url: str, api_port: int, kill_classifier: bool) -> None:
    env = service_env(tmp_path, tenant, database_url=fresh_pg, amqp_url=rabbit_url,
                      smtp_port=smtp_server.port, api_port=api_port)
    procs = Processes(env, tmp_path)
    try:
        for name in ("journal", "delivery", "router", "classifier", "api"):
            procs.start(name)
        await asyncio.sleep(3)  # let the consumers declare their queues
        procs.start("ingest")
        await run_pipeline(procs, dovecot, smtp_server, fresh_pg, api_port,
                           kill_classifier=kill_classifier)
    except BaseException:
        print(procs.tail())
        raise
    finally:
        procs.stop()
        await remove_topology(env)


async def test_all_in_one_on_sqlite(tmp_path: Path, tenant: Path, dovecot: DovecotServer,
                                    smtp_server: SmtpServer, api_port: int) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'pf.db'}"
    await asyncio.to_thread(migrate, db_url)
    env = service_env(tmp_path, tenant, database_url=db_url, amqp_url="memory://",
                      smtp_port=smtp_server.port, api_port=api_port)
    procs = Processes(env, tmp_path)
    try:
        procs.start("all")
        await run_pipeline(procs, dovecot, smtp_server, db_url, api_port)
    except BaseException:
        print(procs.tail())
        raise
    finally:
        procs.stop()


