"""Retention on SQLite and PostgreSQL: message content of items finished long ago is deleted,
shared blobs only when nothing within retention refers to them, audit entries and history stay."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

import services.journal as journal
from services.journal.retention import RetentionJob
from shared import audit
from shared.contracts import (
    AttachmentRef,
    Channel,
    Entity,
    ItemClassified,
    ItemExtracted,
    ItemReceived,
    ItemRouted,
    RouteOutcome,
)
from shared.db.models import (
    AuditEntry,
    EsdhCase,
    EsdhDocument,
    Item,
    ItemTransition,
    OutboxMessage,
    Receipt,
    Retention,
    utcnow,
)
from shared.runtime import Runtime
from shared.settings import Settings
from tests.conftest import async_wait_for, own_database
from tests.support.app import demo_settings, running

OLD, RECENT = timedelta(days=40), timedelta(days=5)
LOGO = b"\x89PNG kommunens logo i hver signatur"


def _settings(tmp_path: Path, db_url: str, **extra: object) -> Settings:
    return demo_settings(db_url, tmp_path, **extra)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A database of each test's own: retention purges every eligible item it finds, so it must
    not see (or purge) the items of other tests in a shared database."""
    with own_database(request, "pf_retention") as url:
        yield url


@pytest.fixture
async def runtime(db_url: str, tmp_path: Path) -> AsyncIterator[Runtime]:
    async with running(_settings(tmp_path, db_url)) as rt:
        yield rt


@dataclass
class Made:
    id: uuid.UUID
    raw: str
    text: str
    attachment: str | None


async def _make(rt: Runtime, name: str, *, age: timedelta, state: str = "done",
                raw: bytes | None = None, logo: bool = False) -> Made:
    """An item as the pipeline leaves it: blobs stored, events in the outbox (published),
    the routing decision in the audit log."""
    item_id, correlation = uuid.uuid4(), uuid.uuid4()
    raw_ref = await rt.blobs.put(raw or f"Subject: {name}\r\n\r\nBrev fra {name}\r\n".encode(),
                                 "message/rfc822")
    text_ref = await rt.blobs.put(f"Brev fra {name}, CPR 010190-1234".encode(), "text/plain")
    attachments: tuple[AttachmentRef, ...] = ()
    if logo:
        attachments = (AttachmentRef(filename="logo.png", content_type="image/png",
                                     blob=await rt.blobs.put(LOGO, "image/png")),)
    at = utcnow() - age
    for ref in (raw_ref, text_ref, *(a.blob for a in attachments)):  # stored back then
        os.utime(rt.blobs.path(ref.sha256), (at.timestamp(), at.timestamp()))
    received = ItemReceived(correlation_id=correlation, producer="ingest", item_id=item_id,
                            channel=Channel.EMAIL, mailbox="post", source_ref=name, raw=raw_ref)
    extracted = received.follow(ItemExtracted, "extractor", channel=Channel.EMAIL,
                                mailbox="post", subject=f"Klage fra {name}", text=text_ref,
                                attachments=attachments)
    classified = extracted.follow(ItemClassified, "classifier", personal_data=True,
                                  entities=(Entity(kind="plate", value="AB12345"),))
    routed = classified.follow(ItemRouted, "router", outcome=RouteOutcome.ROUTED,
                               unit="parkering")
    async with rt.uow() as uow:
        s = uow.session
        s.add(Item(id=item_id, correlation_id=correlation, channel="email", mailbox="post",
                   source_ref=name, raw_sha256=raw_ref.sha256, subject=f"Klage fra {name}",
                   sender=f"{name}@example.dk", state=state, unit="parkering",
                   entities=[{"kind": "plate", "value": "AB12345"}], personal_data=True,
                   created_at=at, updated_at=at))
        await s.flush()
        s.add(ItemTransition(item_id=item_id, from_state="routed", to_state=state, at=at))
        for event in (received, extracted, classified, routed):
            s.add(OutboxMessage(message_id=event.message_id, item_id=item_id,
                                topic=event.topic, payload=event.model_dump_json(),
                                created_at=at, published_at=at))
        await audit.append(s, action="routed", actor="router", item_id=item_id,
                           unit="parkering", sender=f"{name}@example.dk", details={})
        await uow.commit()
    return Made(item_id, raw_ref.sha256, text_ref.sha256,
                attachments[0].blob.sha256 if attachments else None)


def _stored(rt: Runtime, sha: str | None) -> bool:
    assert sha is not None
    return rt.blobs.path(sha).exists()


async def _item(rt: Runtime, item_id: uuid.UUID) -> Item:
    async with rt.uow() as uow:
        item = await uow.session.get(Item, item_id)
        assert item is not None
        return item


async def _count(rt: Runtime, stmt) -> int:  # type: ignore[no-untyped-def]
    async with rt.uow() as uow:
        return int((await uow.session.execute(stmt)).scalar_one())


async def test_content_goes_audit_and_history_stay_shared_blobs_wait(runtime: Runtime) -> None:
    rt = runtime
    old = await _make(rt, "anna", age=OLD, logo=True)
    recent = await _make(rt, "bo", age=RECENT, logo=True)  # shares the logo with anna
    triage = await _make(rt, "carl", age=OLD, state="triage")
    waiting = await _make(rt, "dorte", age=OLD)
    twin = await _make(rt, "erik", age=OLD, raw=b"Subject: samme\r\n\r\nsamme brev\r\n")
    twin2 = await _make(rt, "frida", age=RECENT, raw=b"Subject: samme\r\n\r\nsamme brev\r\n")
    filed = await _make(rt, "gitte", age=OLD)
    async with rt.uow() as uow:
        uow.session.add(Receipt(item_id=waiting.id, message_id=f"<r-{waiting.id}@x>",
                                recipient="dorte@example.dk", status="pending"))
        case = EsdhCase(case_number="05.09.04-G01-1-26", title="Parkering",
                        idempotency_key="test:case")
        uow.session.add(case)
        await uow.session.flush()
        uow.session.add(EsdhDocument(case_id=case.id, item_id=filed.id, title="Klage",
                                     blob_sha256=filed.raw, idempotency_key="test:doc"))
        await uow.commit()
    job = RetentionJob(rt.uow, rt.blobs, 30, grace=0)

    preview = await job.run(dry_run=True)
    assert sorted(map(str, preview.item_ids)) == sorted(map(str, [old.id, twin.id, filed.id]))
    # anna's raw and text, erik's text, gitte's text; kept: the logo (bo), erik's raw
    # (frida's too), gitte's raw (a document in the local archive).
    assert (preview.blobs_deleted, preview.blobs_kept) == (4, 3)
    assert (await _item(rt, old.id)).subject == "Klage fra anna" and _stored(rt, old.raw)

    report = await job.run()
    assert sorted(map(str, report.item_ids)) == sorted(map(str, preview.item_ids))
    assert (report.items, report.blobs_deleted, report.blobs_kept) == (3, 4, 3)
    assert report.bytes_freed == preview.bytes_freed > 0
    gone = [old.raw, old.text, twin.text, filed.text]
    assert not any(_stored(rt, sha) for sha in gone)
    kept = [old.attachment, twin.raw, filed.raw, recent.raw, recent.text, triage.raw,
            triage.text, waiting.raw, waiting.text, twin2.raw, twin2.text]
    assert all(_stored(rt, sha) for sha in kept)

    item = await _item(rt, old.id)
    assert (item.subject, item.entities, item.state, item.unit) == (None, None, "done",
                                                                   "parkering")
    assert item.raw_sha256 == old.raw and item.sender == "anna@example.dk"
    assert (await _item(rt, triage.id)).subject == "Klage fra carl"
    assert (await _item(rt, waiting.id)).subject == "Klage fra dorte"
    assert await _count(rt, select(func.count()).select_from(OutboxMessage).where(
        OutboxMessage.item_id == old.id)) == 0
    assert await _count(rt, select(func.count()).select_from(OutboxMessage).where(
        OutboxMessage.item_id == recent.id)) == 4
    assert await _count(rt, select(func.count()).select_from(ItemTransition).where(
        ItemTransition.item_id == old.id)) == 1
    await rt.chain_audit()
    async with rt.uow() as uow:
        actions = (await uow.session.execute(select(AuditEntry.action).where(
            AuditEntry.item_id == old.id).order_by(AuditEntry.seq))).scalars().all()
        assert actions == ["routed", "content_deleted"]
        assert (await audit.verify(uow.session)).ok
        row = await uow.session.get(Retention, old.id)
        assert row is not None and row.blobs_deleted_at is not None
        assert set(row.blobs or ()) == {old.raw, old.text, old.attachment}

    # Nothing more is due; once bo is old too, the logo has no one left and goes.
    assert (await job.run()).items == 0
    async with rt.uow() as uow:
        bo = await uow.session.get(Item, recent.id)
        assert bo is not None
        bo.updated_at = utcnow() - OLD
        await uow.commit()
    report = await job.run()
    assert report.item_ids == [recent.id] and report.blobs_deleted == 3
    assert not _stored(rt, old.attachment) and not _stored(rt, recent.raw)


async def test_a_blob_stored_again_while_purging_is_kept(runtime: Runtime) -> None:
    """A new item with the same attachment: ingest puts the blob (touching it) before its
    reference commits. The collector sees the touch and keeps the blob."""
    rt = runtime
    old = await _make(rt, "hans", age=OLD, logo=True)
    await rt.blobs.put(LOGO, "image/png")  # the new item's put; its commit comes later
    report = await RetentionJob(rt.uow, rt.blobs, 30).run()  # default grace: an hour
    assert (report.items, report.blobs_deleted, report.blobs_kept) == (1, 2, 1)
    assert _stored(rt, old.attachment) and not _stored(rt, old.raw)
    assert await rt.blobs.get(old.attachment or "") == LOGO
    assert not list(rt.blobs.root.rglob(".purge-*"))


async def test_crash_between_purge_and_collect_leaks_nothing(runtime: Runtime) -> None:
    rt = runtime
    old = await _make(rt, "ida", age=OLD)
    job = RetentionJob(rt.uow, rt.blobs, 30, grace=0)
    assert await job._purge_batch(utcnow() - timedelta(days=30)) == [old.id]  # then "crash"
    # a crash between moving a blob aside and unlinking it
    os.rename(rt.blobs.path(old.text), rt.blobs.path(old.text).with_name(f".purge-{old.text}"))
    assert _stored(rt, old.raw)
    report = await RetentionJob(rt.uow, rt.blobs, 30, grace=0).run()
    assert (report.items, report.blobs_deleted) == (0, 2)
    assert not _stored(rt, old.raw) and not list(rt.blobs.root.rglob(".purge-*"))


async def test_concurrent_runs_purge_each_item_once(runtime: Runtime) -> None:
    rt = runtime
    made = [await _make(rt, f"p{n}", age=OLD) for n in range(12)]
    jobs = [RetentionJob(rt.uow, rt.blobs, 30, batch=5, grace=0) for _ in range(2)]
    reports = await asyncio.gather(*(j.run() for j in jobs))
    purged = [i for r in reports for i in r.item_ids]
    assert sorted(map(str, purged)) == sorted(str(m.id) for m in made)
    await rt.chain_audit()
    assert await _count(rt, select(func.count()).select_from(AuditEntry).where(
        AuditEntry.action == "content_deleted",
        AuditEntry.item_id.in_([m.id for m in made]))) == len(made)
    assert not any(_stored(rt, m.raw) or _stored(rt, m.text) for m in made)


async def test_journal_service_runs_retention_periodically(db_url: str, tmp_path: Path) -> None:
    rt = Runtime(_settings(tmp_path, db_url, retention_days=30, retention_interval=0.2))
    await rt.start()
    try:
        old = await _make(rt, "jens", age=OLD)
        young = await _make(rt, "kim", age=RECENT)
        await journal.start(rt)

        async def purged() -> bool:
            async with rt.uow() as uow:
                return await uow.session.get(Retention, old.id) is not None

        await async_wait_for(purged, timeout=20)
        await async_wait_for(lambda: _true(not _stored(rt, old.raw)), timeout=10)
        assert _stored(rt, young.raw) and (await _item(rt, young.id)).subject
    finally:
        await rt.stop()


async def _true(value: bool) -> bool:
    return value


def test_cli_dry_run_then_run(db_url: str, tmp_path: Path) -> None:
    async def setup() -> Made:
        rt = Runtime(_settings(tmp_path, db_url))
        try:
            return await _make(rt, "lone", age=OLD)
        finally:
            await rt.stop()

    made = asyncio.run(setup())
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTFORDELER_")}
    env.update({"POSTFORDELER_DATA_DIR": str(tmp_path / "data"),
                "POSTFORDELER_DATABASE_URL": db_url, "POSTFORDELER_LOG_LEVEL": "WARNING"})

    def cli(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "postfordeler", "retention", "run", *args],
                              env={**env, **extra}, capture_output=True, text=True, timeout=60)

    result = cli("--dry-run")
    assert result.returncode == 2 and "POSTFORDELER_RETENTION_DAYS" in result.stderr
    result = cli("--dry-run", POSTFORDELER_RETENTION_DAYS="30")
    assert result.returncode == 0, result.stderr
    assert "would delete the content of 1 item(s), 2 blob(s)" in result.stdout
    blob = tmp_path / "data" / "blobs" / made.raw[:2] / made.raw[2:4] / made.raw
    assert blob.exists()
    result = cli("--days", "30")
    assert result.returncode == 0, result.stderr
    assert "deleted the content of 1 item(s), 2 blob(s)" in result.stdout
    assert not blob.exists()
