"""The journal against real databases (SQLite and PostgreSQL) and a real SMTP server: receipts
exactly once, one case and document per item under redelivery, and a tamper-evident audit log."""

from __future__ import annotations

import asyncio
import email
import email.policy
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

import services.journal as journal
from services.journal import Journal, LocalArchive, Receipts, RetryPolicy, make_sender, seed_cases
from services.journal.receipts import _aware
from shared import audit
from shared.contracts import ItemRouted, ItemState, JournalAction, RouteOutcome
from shared.db.models import (
    AuditEntry,
    EsdhCase,
    EsdhDocument,
    Item,
    ItemTransition,
    OutboxMessage,
    Receipt,
    utcnow,
)
from shared.runtime import Runtime
from shared.settings import Settings
from tests.conftest import async_wait_for
from tests.support.app import demo_settings, running
from tests.support.smtp import SmtpServer, smtp_server  # noqa: F401  (fixture)

DOMAIN = "demoby.dk"  # the demo tenant's municipality domain


def _settings(tmp_path: Path, db_url: str, smtp: SmtpServer | None) -> Settings:
    return demo_settings(db_url, tmp_path, smtp_host="127.0.0.1" if smtp else None,
                         smtp_port=smtp.port if smtp else 25, smtp_timeout=5.0,
                         retry_base_delay=0.05, retry_max_delay=0.2)


@pytest.fixture
async def runtime(db_url: str, tmp_path: Path,
                  smtp_server: SmtpServer) -> AsyncIterator[Runtime]:  # noqa: F811
    async with running(_settings(tmp_path, db_url, smtp_server)) as rt:
        yield rt


async def _item(rt: Runtime, *, state: str = "routed", sender: str | None = "borger@example.dk",
                subject: str = "Klage over parkeringsafgift",
                auto_reply: bool = False) -> uuid.UUID:
    item_id = uuid.uuid4()
    async with rt.uow() as uow:
        uow.session.add(Item(
            id=item_id, correlation_id=uuid.uuid4(), channel="email", mailbox="post",
            source_ref=f"test-{item_id}", message_id=f"<{item_id}@mail.example.dk>",
            raw_sha256="ab" * 32, subject=subject, sender=sender, state=state,
            entities=[{"kind": "auto_reply", "value": "true"}] if auto_reply else []))
        await uow.commit()
    return item_id


def _routed(item_id: uuid.UUID, *, outcome: RouteOutcome = RouteOutcome.ROUTED,
            journal_action: JournalAction = JournalAction.NEW_CASE, case_number: str | None = None,
            receipt: bool = True) -> ItemRouted:
    return ItemRouted(correlation_id=uuid.uuid4(), producer="router", item_id=item_id,
                      outcome=outcome, unit="parkering", clerk="ALA", case_number=case_number,
                      journal=journal_action, kle="05.09.04", receipt=receipt,
                      reasons=("rule parkering: licence plate",))


async def _handle(rt: Runtime, event: ItemRouted) -> None:
    """The journal's handler in a transaction of its own, bypassing the inbox (a redelivery the
    inbox cannot recognise, e.g. the same decision re-published under a new message id)."""
    async with rt.uow() as uow:
        await Journal(rt.tenant, LocalArchive).handle(event, uow)
        await uow.commit()


async def _scalar(rt: Runtime, stmt):  # type: ignore[no-untyped-def]
    async with rt.uow() as uow:
        return (await uow.session.execute(stmt)).scalar_one()


async def _receipt_ids(smtp: SmtpServer) -> list[str]:
    return [email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"]
            for raw in smtp.raw_messages()]


async def test_redelivered_item_gets_one_receipt_one_case_one_document(
        runtime: Runtime, smtp_server: SmtpServer) -> None:  # noqa: F811
    item_id = await _item(runtime)
    await journal.start(runtime)
    event = _routed(item_id)
    await runtime.bus.publish(event)
    await runtime.bus.publish(event)  # the broker delivers it twice

    async def finished() -> bool:
        async with runtime.uow() as uow:
            item = await uow.session.get(Item, item_id)
            receipt = await uow.session.get(Receipt, item_id)
            return bool(item and item.state == "done" and receipt and receipt.status == "sent")

    await async_wait_for(finished, timeout=20)
    await _handle(runtime, _routed(item_id))  # and once more under a new message id
    await asyncio.sleep(0.3)  # let any (wrong) second send arrive
    assert await _receipt_ids(smtp_server) == [f"<receipt-{item_id}@{DOMAIN}>"]
    assert smtp_server.messages[0].rcpt_tos == ("borger@example.dk",)
    await runtime.chain_audit()

    async with runtime.uow() as uow:
        s = uow.session
        item = await s.get(Item, item_id)
        assert item is not None and item.case_number
        assert item.case_number.startswith("05.09.04-G01-")
        cases = (await s.execute(select(EsdhCase).where(
            EsdhCase.idempotency_key == f"item:{item_id}:case"))).scalars().all()
        docs = (await s.execute(select(EsdhDocument).where(
            EsdhDocument.item_id == item_id))).scalars().all()
        assert [c.case_number for c in cases] == [item.case_number]
        assert len(docs) == 1 and docs[0].journalised_at is not None
        assert docs[0].case_id == cases[0].id
        states = (await s.execute(select(ItemTransition.to_state).where(
            ItemTransition.item_id == item_id).order_by(ItemTransition.id))).scalars().all()
        assert states == ["journalised", "done"]
        actions = (await s.execute(select(AuditEntry.action).where(
            AuditEntry.item_id == item_id).order_by(AuditEntry.seq))).scalars().all()
        assert sorted(actions) == ["journalised", "receipt_sent", "routed"]
        journalised = (await s.execute(select(OutboxMessage.payload).where(
            OutboxMessage.item_id == item_id, OutboxMessage.topic == "item.journalised"))
        ).scalars().all()
        assert len(journalised) == 1 and f"receipt-{item_id}@{DOMAIN}" in journalised[0]
        receipt = await s.get(Receipt, item_id)
        assert receipt is not None and receipt.attempts == 1


async def test_matched_case_files_on_the_existing_case_once(runtime: Runtime) -> None:
    await seed_cases(runtime)
    assert await seed_cases(runtime) == 0  # idempotent
    known = next(iter(runtime.tenant.cases))
    item_id = await _item(runtime)
    event = _routed(item_id, journal_action=JournalAction.MATCHED_CASE, case_number=known,
                    receipt=False)
    await _handle(runtime, event)
    await _handle(runtime, event)
    docs = await _scalar(runtime, select(func.count()).select_from(EsdhDocument).join(
        EsdhCase, EsdhDocument.case_id == EsdhCase.id).where(
        EsdhDocument.item_id == item_id, EsdhCase.case_number == known))
    assert docs == 1
    assert await _scalar(runtime, select(func.count()).select_from(EsdhCase).where(
        EsdhCase.idempotency_key == f"item:{item_id}:case")) == 0
    assert await _scalar(runtime, select(Item.case_number).where(Item.id == item_id)) == known
    assert await _scalar(runtime, select(func.count()).select_from(Receipt).where(
        Receipt.item_id == item_id)) == 0


async def test_matched_case_missing_from_archive_makes_one_new_case(runtime: Runtime) -> None:
    item_id = await _item(runtime)
    event = _routed(item_id, journal_action=JournalAction.MATCHED_CASE,
                    case_number="99.99.99-G01-1-99", receipt=False)
    await _handle(runtime, event)
    await _handle(runtime, event)
    number = await _scalar(runtime, select(Item.case_number).where(Item.id == item_id))
    assert number.startswith("05.09.04-G01-") and number != event.case_number
    assert await _scalar(runtime, select(func.count()).select_from(EsdhDocument).where(
        EsdhDocument.item_id == item_id)) == 1
    await runtime.chain_audit()
    detail = await _scalar(runtime, select(AuditEntry.details).where(
        AuditEntry.item_id == item_id, AuditEntry.action == "journalised"))
    assert detail["matched_case_missing"] == "99.99.99-G01-1-99"


async def test_new_cases_get_consecutive_numbers(runtime: Runtime) -> None:
    numbers = []
    for _ in range(3):
        item_id = await _item(runtime)
        await _handle(runtime, _routed(item_id, receipt=False))
        numbers.append(await _scalar(runtime, select(Item.case_number).where(Item.id == item_id)))
    serials = [int(n.split("-")[2]) for n in numbers]
    assert serials == sorted(serials) and len(set(serials)) == 3
    assert serials[1] == serials[0] + 1 or serials[1] > serials[0]


@pytest.mark.parametrize("kind", ["auto_reply", "no_reply", "no_sender", "not_relevant",
                                  "no_receipt_rule"])
async def test_no_receipt_for_robots_and_irrelevant_items(
        runtime: Runtime, smtp_server: SmtpServer, kind: str) -> None:  # noqa: F811
    sender = {"no_reply": "noreply@bank.example.dk", "no_sender": None}.get(
        kind, "borger@example.dk")
    state = "not_relevant" if kind == "not_relevant" else "routed"
    item_id = await _item(runtime, sender=sender, state=state, auto_reply=kind == "auto_reply")
    outcome = RouteOutcome.NOT_RELEVANT if kind == "not_relevant" else RouteOutcome.ROUTED
    event = _routed(item_id, outcome=outcome, receipt=kind != "no_receipt_rule",
                    journal_action=JournalAction.NONE)
    receipts = Receipts(runtime.uow, runtime.tenant, make_sender(runtime.settings))
    assert await receipts.deliver(event) is False
    await _handle(runtime, event)
    assert smtp_server.count() == 0
    assert await _scalar(runtime, select(func.count()).select_from(Receipt).where(
        Receipt.item_id == item_id)) == 0
    assert await _scalar(runtime, select(Item.state).where(Item.id == item_id)) == (
        "not_relevant" if kind == "not_relevant" else "done")
    await runtime.chain_audit()
    action = await _scalar(runtime, select(AuditEntry.action).where(AuditEntry.item_id == item_id))
    assert action == outcome.value


async def test_triage_gets_a_receipt_and_stays_in_triage(
        runtime: Runtime, smtp_server: SmtpServer) -> None:  # noqa: F811
    item_id = await _item(runtime, state="triage")
    event = _routed(item_id, outcome=RouteOutcome.TRIAGE, journal_action=JournalAction.NONE)
    await _handle(runtime, event)
    assert await Receipts(runtime.uow, runtime.tenant, make_sender(runtime.settings)).deliver(event)
    assert smtp_server.count() == 1
    assert await _scalar(runtime, select(Item.state).where(Item.id == item_id)) == "triage"
    assert await _scalar(runtime, select(func.count()).select_from(EsdhDocument).where(
        EsdhDocument.item_id == item_id)) == 0


async def _make_due(rt: Runtime, item_id: uuid.UUID) -> None:
    async with rt.uow() as uow:
        await uow.session.execute(update(Receipt).where(Receipt.item_id == item_id)
                                  .values(next_attempt_at=utcnow() - timedelta(seconds=1)))
        await uow.commit()


async def test_smtp_refusing_makes_the_receipt_wait_and_retry_with_back_off(
        runtime: Runtime, smtp_server: SmtpServer) -> None:  # noqa: F811
    item_id = await _item(runtime)
    event = _routed(item_id)
    receipts = Receipts(runtime.uow, runtime.tenant, make_sender(runtime.settings),
                        policy=RetryPolicy(base=60, max_delay=600, max_attempts=3))
    smtp_server.refuse(451)
    assert await receipts.deliver(event) is False
    async with runtime.uow() as uow:
        row = await uow.session.get(Receipt, item_id)
        assert row is not None and (row.status, row.attempts) == ("pending", 1)
        assert row.last_error and "451" in row.last_error
        wait = _aware(row.next_attempt_at) - utcnow()  # type: ignore[operator]
        assert timedelta(seconds=50) < wait <= timedelta(seconds=60)
    assert await receipts.deliver(event) is False  # a redelivery does not jump the queue
    assert await receipts.retry_due() == 0  # not due yet
    await _make_due(runtime, item_id)
    assert await receipts.retry_due() == 0  # still refused: the delay doubles
    async with runtime.uow() as uow:
        row = await uow.session.get(Receipt, item_id)
        assert row is not None and row.attempts == 2
        assert _aware(row.next_attempt_at) - utcnow() > timedelta(seconds=100)  # type: ignore[operator]
    assert smtp_server.count() == 0
    smtp_server.accept()
    await _make_due(runtime, item_id)
    assert await receipts.retry_due() == 1
    assert await receipts.retry_due() == 0
    assert await receipts.deliver(event) is False  # sent: never again
    assert await _receipt_ids(smtp_server) == [f"<receipt-{item_id}@{DOMAIN}>"]
    async with runtime.uow() as uow:
        row = await uow.session.get(Receipt, item_id)
        assert row is not None and (row.status, row.attempts) == ("sent", 3)
        assert row.next_attempt_at is None


async def test_receipt_fails_after_max_attempts_and_is_audited(
        runtime: Runtime, smtp_server: SmtpServer) -> None:  # noqa: F811
    item_id = await _item(runtime)
    receipts = Receipts(runtime.uow, runtime.tenant, make_sender(runtime.settings),
                        policy=RetryPolicy(base=60, max_attempts=2))
    smtp_server.refuse(451)
    assert await receipts.deliver(_routed(item_id)) is False
    await _make_due(runtime, item_id)
    assert await receipts.retry_due() == 0
    async with runtime.uow() as uow:
        row = await uow.session.get(Receipt, item_id)
        assert row is not None and (row.status, row.attempts) == ("failed", 2)
    await runtime.chain_audit()
    detail = await _scalar(runtime, select(AuditEntry.details).where(
        AuditEntry.item_id == item_id, AuditEntry.action == "receipt_failed"))
    assert detail["attempts"] == 2 and "451" in detail["error"]
    smtp_server.accept()
    await _make_due(runtime, item_id)
    assert await receipts.retry_due() == 0 and smtp_server.count() == 0


async def test_smtp_unreachable_waits(db_url: str, tmp_path: Path) -> None:
    settings = _settings(tmp_path, db_url, None).model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": 1})
    rt = Runtime(settings)
    try:
        item_id = await _item(rt)
        assert not await Receipts(rt.uow, rt.tenant, make_sender(settings)).deliver(
            _routed(item_id))
        async with rt.uow() as uow:
            row = await uow.session.get(Receipt, item_id)
            assert row is not None and row.status == "pending" and row.last_error
    finally:
        await rt.stop()


async def test_without_smtp_receipts_go_to_the_pickup_directory(db_url: str,
                                                                tmp_path: Path) -> None:
    settings = _settings(tmp_path, db_url, None)
    rt = Runtime(settings)
    try:
        item_id = await _item(rt)
        receipts = Receipts(rt.uow, rt.tenant, make_sender(settings))
        assert await receipts.deliver(_routed(item_id))
        assert not await receipts.deliver(_routed(item_id))
        files = list(settings.outbox_path.iterdir())
        assert [f.name for f in files] == [f"{item_id}.eml"]
        msg = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
        assert msg["Message-ID"] == f"<receipt-{item_id}@{DOMAIN}>"
        assert msg["Auto-Submitted"] == "auto-replied"
    finally:
        await rt.stop()


async def test_audit_chain_verifies_under_concurrency_and_detects_tampering(
        runtime: Runtime) -> None:
    item_id = uuid.uuid4()

    async def one(n: int) -> None:
        async with runtime.uow() as uow:
            await audit.append(uow.session, action="test", actor="test", item_id=item_id,
                               details={"n": n, "tekst": "æøå"})
            await uow.commit()

    await asyncio.gather(*(one(n) for n in range(8)))
    # Several chainers at once, as with several processes: one chain, every entry once.
    await asyncio.gather(*(runtime.chain_audit() for _ in range(3)))
    async with runtime.uow() as uow:
        result = await audit.verify(uow.session)
        assert result.ok, result.message
        seqs = (await uow.session.execute(select(AuditEntry.seq).where(
            AuditEntry.item_id == item_id).order_by(AuditEntry.seq))).scalars().all()
    assert len(seqs) == 8 and result.checked >= 8
    victim = seqs[3]
    async with runtime.uow() as uow:
        original = (await uow.session.get(AuditEntry, victim)).details  # type: ignore[union-attr]
        await uow.session.execute(update(AuditEntry).where(AuditEntry.seq == victim)
                                  .values(details={"n": 999}))
        await uow.commit()
    try:
        async with runtime.uow() as uow:
            broken = await audit.verify(uow.session)
        assert not broken.ok and broken.first_bad_seq == victim, broken
    finally:  # the PostgreSQL database is shared by the test session: repair the chain
        async with runtime.uow() as uow:
            await uow.session.execute(update(AuditEntry).where(AuditEntry.seq == victim)
                                      .values(details=original))
            await uow.commit()
    async with runtime.uow() as uow:
        assert (await audit.verify(uow.session)).ok


async def test_journal_leaves_items_in_other_states_alone(runtime: Runtime) -> None:
    item_id = await _item(runtime, state=ItemState.FAILED.value)
    await _handle(runtime, _routed(item_id, receipt=False))
    assert await _scalar(runtime, select(Item.state).where(Item.id == item_id)) == "failed"
    assert await _scalar(runtime, select(func.count()).select_from(EsdhDocument).where(
        EsdhDocument.item_id == item_id)) == 0


async def test_concurrent_deliveries_in_one_process_send_once(
        runtime: Runtime, smtp_server: SmtpServer) -> None:  # noqa: F811
    item_id = await _item(runtime)
    event = _routed(item_id)
    receipts = Receipts(runtime.uow, runtime.tenant, make_sender(runtime.settings))
    sent = await asyncio.gather(*(receipts.deliver(event) for _ in range(4)))
    assert sorted(sent) == [False, False, False, True]
    assert smtp_server.count() == 1


async def test_audit_entries_share_the_fate_of_their_transaction(runtime: Runtime) -> None:
    item_id = uuid.uuid4()
    async with runtime.uow() as uow:  # rolled back: the effect did not happen
        await audit.append(uow.session, action="test", actor="test", item_id=item_id,
                           details={"n": 1})
    async with runtime.uow() as uow:
        await audit.append(uow.session, action="test", actor="test", item_id=item_id,
                           details={"n": 2})
        assert await audit.recorded(uow.session, item_id, "test")  # pending counts too
        await uow.commit()
    await runtime.chain_audit()
    async with runtime.uow() as uow:
        rows = (await uow.session.execute(select(AuditEntry.details).where(
            AuditEntry.item_id == item_id))).scalars().all()
        assert rows == [{"n": 2}]
        assert await audit.recorded(uow.session, item_id, "test")
        assert (await audit.verify(uow.session)).ok
