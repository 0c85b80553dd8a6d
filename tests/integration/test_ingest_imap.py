"""Ingest against a real dovecot and real databases (SQLite and PostgreSQL), with the
in-process bus: poll, dedupe, failed messages, crash between commit and move, extraction."""

from __future__ import annotations

import shutil
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from sqlalchemy import select

from services import ingest
from services.ingest.extractor import CONSUMER, Extractor
from services.ingest.mailboxes import ImapMailbox, Mailbox, MaildirMailbox
from services.ingest.poller import PollReport, poll_mailbox
from shared.contracts import ItemEvent, ItemExtracted, ItemState
from shared.db import Item, ItemTransition, SourceMessage
from shared.runtime import Consumer, Runtime
from shared.settings import DEMO_TENANT_DIR, Settings
from tests.conftest import async_wait_for, free_port
from tests.support.dovecot import DovecotServer, dovecot  # noqa: F401  (fixture)

PROCESSED = "Postfordeler/Behandlet"
FAILED = "Postfordeler/Fejl"
NOT_A_MAIL = b"This is not a mail\r\njust some text that ended up in the inbox\r\n"


def mail(subject: str, message_id: str | None = None, body: str = "Hej kommune") -> bytes:
    msg = EmailMessage()
    msg["From"] = "Borger Børgesen <borger@example.dk>"
    msg["To"] = "post@eksempelby.dk"
    msg["Subject"] = subject
    msg["Message-ID"] = message_id or f"<{uuid.uuid4()}@example.dk>"
    msg.set_content(body)
    msg.add_attachment("Bilag æøå", subtype="plain", filename="bilag æøå.txt")
    return msg.as_bytes()


def make_runtime(tmp_path: Path, db_url: str, mailboxes: list[dict[str, Any]]) -> Runtime:
    tenant = tmp_path / "tenant"
    tenant.mkdir(exist_ok=True)
    shutil.copy(DEMO_TENANT_DIR / "org.yaml", tenant / "org.yaml")
    (tenant / "mailboxes.yaml").write_text(yaml.safe_dump({"mailboxes": mailboxes}))
    settings = Settings(data_dir=tmp_path / "data", database_url=db_url,
                        tenant_dir=tenant, poll_interval=0.2, retry_base_delay=0.01)
    return Runtime(settings)


def imap_config(server: DovecotServer, name: str, user: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "imap", "host": server.host, "port": server.port,
            "ssl": False, "username": user, "password": "secret", **extra}


async def items_of(runtime: Runtime, mailbox: str) -> list[Item]:
    async with runtime.uow() as uow:
        return list((await uow.session.execute(
            select(Item).where(Item.mailbox == mailbox).order_by(Item.created_at))).scalars())


async def sources_of(runtime: Runtime, mailbox: str) -> list[SourceMessage]:
    async with runtime.uow() as uow:
        return list((await uow.session.execute(
            select(SourceMessage).where(SourceMessage.mailbox == mailbox)
            .order_by(SourceMessage.id))).scalars())


async def test_poll_dedupe_failed_and_extract(dovecot: DovecotServer, db_url: str,  # noqa: F811
                                              tmp_path: Path) -> None:
    user = f"u{uuid.uuid4().hex[:8]}@example.test"
    name = f"post-{uuid.uuid4().hex[:8]}"
    dovecot.add_user(user, "secret")
    first_id = f"<{uuid.uuid4()}@example.dk>"
    dovecot.append(user, "INBOX", mail("Ansøgning", first_id))
    dovecot.append(user, "INBOX", mail("Ansøgning (sendt igen)", first_id))
    dovecot.append(user, "INBOX", NOT_A_MAIL)
    dovecot.append(user, "INBOX", mail("Klage over vejarbejde"))

    runtime = make_runtime(tmp_path, db_url, [imap_config(dovecot, name, user)])
    await runtime.start()
    try:
        await runtime.start_consumer(
            Consumer(CONSUMER, ("item.received",), Extractor(runtime.blobs).handle))
        extracted: list[ItemExtracted] = []

        async def probe(event: ItemEvent) -> None:
            assert isinstance(event, ItemExtracted)
            extracted.append(event)

        await runtime.bus.subscribe(f"probe-{name}", ("item.extracted",), probe)
        report = await ingest.poll_once(runtime)
        assert (report.new, report.duplicates, report.failed, report.errors) == (2, 1, 1, {})

        assert dovecot.count(user, "INBOX") == 0
        assert dovecot.count(user, PROCESSED) == 3
        assert dovecot.count(user, FAILED) == 1
        assert dovecot.fetch_all(user, FAILED) == [NOT_A_MAIL]

        items = await items_of(runtime, name)
        assert len(items) == 3
        failed = [i for i in items if i.state == ItemState.FAILED.value]
        assert len(failed) == 1 and "no mail header fields" in (failed[0].failure_reason or "")
        good = [i for i in items if i is not failed[0]]
        assert {i.subject for i in good} == {"Ansøgning", "Klage over vejarbejde"}
        assert all(i.sender == "borger@example.dk" and i.channel == "email" for i in good)
        for item in items:
            assert runtime.blobs.get_sync(item.raw_sha256 or "")  # raw stored and intact

        sources = await sources_of(runtime, name)
        assert len(sources) == 4
        dup = [s for s in sources if s.duplicate]
        assert len(dup) == 1 and dup[0].message_id == first_id
        original = next(i for i in good if i.message_id == first_id)
        assert dup[0].item_id == original.id

        async def all_extracted() -> bool:
            return all(i.state == ItemState.EXTRACTED.value
                       for i in await items_of(runtime, name) if i.id != failed[0].id)

        await async_wait_for(all_extracted, timeout=20)
        await async_wait_for(lambda: _true(len(extracted) == 2), timeout=5)
        event = next(e for e in extracted if e.item_id == original.id)
        assert event.subject == "Ansøgning" and event.mailbox == name
        assert event.sender.address == "borger@example.dk"
        assert event.recipients == ("post@eksempelby.dk",)
        assert not event.auto_submitted
        assert runtime.blobs.get_sync(event.text).decode().strip() == "Hej kommune"
        [attachment] = event.attachments
        assert attachment.filename == "bilag æøå.txt" and attachment.text is not None
        assert runtime.blobs.get_sync(attachment.text).decode().strip() == "Bilag æøå"
        async with runtime.uow() as uow:
            history = (await uow.session.execute(
                select(ItemTransition.from_state, ItemTransition.to_state)
                .where(ItemTransition.item_id == original.id)
                .order_by(ItemTransition.id))).all()
            failed_history = (await uow.session.execute(
                select(ItemTransition.from_state, ItemTransition.to_state)
                .where(ItemTransition.item_id == failed[0].id))).all()
        assert [tuple(h) for h in history] == [(None, "received"), ("received", "extracted")]
        assert [tuple(h) for h in failed_history] == [(None, "failed")]

        # a second poll finds nothing new
        again = await ingest.poll_once(runtime)
        assert (again.new, again.duplicates, again.failed, again.resumed) == (0, 0, 0, 0)
    finally:
        await runtime.stop()


async def _true(value: bool) -> bool:
    return value


class CrashBeforeMove:
    """Fault injection: the process dies after the commit, before the message is moved."""

    def __init__(self, inner: Mailbox) -> None:
        self.inner = inner
        self.name = inner.name

    async def list_new(self) -> list[str]:
        return await self.inner.list_new()

    async def fetch(self, ref: str) -> bytes:
        return await self.inner.fetch(ref)

    async def mark_processed(self, ref: str) -> None:
        raise RuntimeError("simulated crash")

    async def mark_failed(self, ref: str) -> None:
        raise RuntimeError("simulated crash")

    async def close(self) -> None:
        await self.inner.close()


async def test_crash_between_commit_and_move(dovecot: DovecotServer,  # noqa: F811
                                             sqlite_url: str, tmp_path: Path) -> None:
    user = f"u{uuid.uuid4().hex[:8]}@example.test"
    name = f"post-{uuid.uuid4().hex[:8]}"
    dovecot.add_user(user, "secret")
    dovecot.append(user, "INBOX", mail("Om parkering"))
    runtime = make_runtime(tmp_path, sqlite_url, [imap_config(dovecot, name, user)])
    await runtime.start()
    try:
        crashing = CrashBeforeMove(ImapMailbox(runtime.tenant.mailboxes[0]))
        with pytest.raises(RuntimeError, match="simulated crash"):
            await poll_mailbox(runtime, crashing, PollReport())
        await crashing.close()
        assert len(await items_of(runtime, name)) == 1
        assert dovecot.count(user, "INBOX") == 1  # stored, but still at the source

        report = await ingest.poll_once(runtime)
        assert (report.new, report.resumed) == (0, 1)
        assert len(await items_of(runtime, name)) == 1
        assert len(await sources_of(runtime, name)) == 1
        assert dovecot.count(user, "INBOX") == 0
        assert dovecot.count(user, PROCESSED) == 1
    finally:
        await runtime.stop()


async def test_start_polls_and_survives_a_dead_mailbox(dovecot: DovecotServer,  # noqa: F811
                                                       sqlite_url: str, tmp_path: Path) -> None:
    user = f"u{uuid.uuid4().hex[:8]}@example.test"
    good, dead = f"good-{uuid.uuid4().hex[:8]}", f"dead-{uuid.uuid4().hex[:8]}"
    dovecot.add_user(user, "secret")
    dead_config = imap_config(dovecot, dead, user, port=free_port())  # nothing listens there
    runtime = make_runtime(tmp_path, sqlite_url,
                           [dead_config, imap_config(dovecot, good, user, folder="Indbakke")])
    dovecot.append(user, "Indbakke", mail("Første"))
    await runtime.start()
    try:
        await ingest.start(runtime)
        dovecot.append(user, "Indbakke", mail("Anden"))

        async def both_extracted() -> bool:
            items = await items_of(runtime, good)
            return len(items) == 2 and all(i.state == "extracted" for i in items)

        await async_wait_for(both_extracted, timeout=20)
        assert dovecot.count(user, "Indbakke") == 0
        assert REGISTRY.get_sample_value("postfordeler_mailbox_up", {"mailbox": dead}) == 0
        assert REGISTRY.get_sample_value("postfordeler_mailbox_up", {"mailbox": good}) == 1
    finally:
        await runtime.stop()


async def test_maildir_mailbox(sqlite_url: str, tmp_path: Path) -> None:
    name = f"scan-{uuid.uuid4().hex[:8]}"
    runtime = make_runtime(tmp_path, sqlite_url, [
        {"name": name, "kind": "maildir", "path": "maildir/scan"}])
    adapter = MaildirMailbox(runtime.tenant.mailboxes[0], runtime.settings.data_dir)
    md = adapter._open()
    md.add(mail("Scannet brev"))
    md.add(NOT_A_MAIL)
    await runtime.start()
    try:
        report = await ingest.poll_once(runtime)
        assert (report.new, report.failed, report.errors) == (1, 1, {})
        assert md.keys() == []
        processed = md.get_folder("Postfordeler.Behandlet")
        failed = md.get_folder("Postfordeler.Fejl")
        assert len(processed.keys()) == 1 and len(failed.keys()) == 1
        assert failed.get_bytes(failed.keys()[0]) == NOT_A_MAIL
        states = sorted(i.state for i in await items_of(runtime, name))
        assert states == ["failed", "received"]
    finally:
        await runtime.stop()


async def test_old_server_without_move_and_dot_delimiter(sqlite_url: str, tmp_path: Path) -> None:
    """COPY + \\Deleted + EXPUNGE when MOVE is not offered; folders use the server's delimiter."""
    caps = "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE"  # neither MOVE nor UIDPLUS
    with DovecotServer(tmp_path / "old", separator=".", capabilities=caps) as server:
        user, name = "old@example.test", f"old-{uuid.uuid4().hex[:8]}"
        server.add_user(user, "secret")
        server.append(user, "INBOX", mail("Gammel server"))
        server.append(user, "INBOX", NOT_A_MAIL)
        runtime = make_runtime(tmp_path, sqlite_url, [imap_config(server, name, user)])
        await runtime.start()
        try:
            adapter = ImapMailbox(runtime.tenant.mailboxes[0])
            await adapter.list_new()
            assert adapter._client is not None and not adapter._client.has_capability("MOVE")
            await adapter.close()
            report = await ingest.poll_once(runtime)
            assert (report.new, report.failed, report.errors) == (1, 1, {})
            assert server.count(user, "INBOX") == 0
            assert server.count(user, "Postfordeler.Behandlet") == 1
            assert server.count(user, "Postfordeler.Fejl") == 1
        finally:
            await runtime.stop()
