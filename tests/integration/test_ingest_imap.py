"""Ingest against a real dovecot and real databases (SQLite and PostgreSQL), with the
in-process bus: poll, dedupe, failed messages, crash between commit and move, extraction."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import REGISTRY
from sqlalchemy import select

from services import ingest
from services.api import create_app
from services.ingest.extractor import CONSUMER, Extractor
from services.ingest.mailboxes import ImapMailbox, Mailbox, MaildirMailbox
from services.ingest.poller import MAX_BACKOFF, PollReport, backoff, poll_mailbox, run_mailbox
from shared.contracts import ItemEvent, ItemExtracted, ItemState
from shared.db import Item, ItemTransition, SourceMessage
from shared.db.models import MailboxStatus
from shared.oauth import xoauth2_string
from shared.runtime import Consumer, Runtime
from shared.settings import DEMO_TENANT_DIR, Settings
from tests.conftest import async_wait_for, free_port
from tests.support.dovecot import DovecotServer, dovecot  # noqa: F401  (fixture)
from tests.support.graph_server import GraphServer

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

    async def wait(self, interval: float) -> None:
        await self.inner.wait(interval)

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


class OAuthDovecot(DovecotServer):
    """dovecot with its oauth2 passdb: XOAUTH2 tokens are checked against the local token
    server's RFC 7662 introspection endpoint, as dovecot does it against a real IdP."""

    def __init__(self, tmpdir: Path, introspection_url: str) -> None:
        self.introspection_url = introspection_url
        super().__init__(tmpdir)

    def _capability_line(self) -> str:
        conf = self.dir / "oauth2.conf.ext"
        conf.write_text(f"introspection_url = {self.introspection_url}\n"
                        "introspection_mode = post\nusername_attribute = username\n"
                        "active_attribute = active\nactive_value = true\n")
        conf.chmod(0o644)
        return ("auth_mechanisms = plain login xoauth2 oauthbearer\n"
                f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                f"  args = {conf}\n}}\n")


def test_xoauth2_sasl_string() -> None:
    assert xoauth2_string("post@kommune.dk", "tok") == \
        "user=post@kommune.dk\x01auth=Bearer tok\x01\x01"


async def test_xoauth2_login_with_client_credentials(sqlite_url: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The adapter gets an app-only token from the token endpoint and logs in with XOAUTH2;
    dovecot accepts it only because the token introspects as active for that user."""
    user, name = "post@example.test", f"oauth-{uuid.uuid4().hex[:8]}"
    with GraphServer() as idp, OAuthDovecot(tmp_path / "oauth", f"{idp.url}/introspect") as imap:
        imap.add_user(user, "not-used-by-the-adapter")
        imap.append(user, "INBOX", mail("Via OAuth2"))
        idp.add_client("app-1", "s3cret", subject=user)
        monkeypatch.setenv("PF_TEST_OAUTH_SECRET", "s3cret")
        config = imap_config(imap, name, user, password=None, auth="oauth2", oauth2={
            "token_url": f"{idp.url}/tenant-1/oauth2/v2.0/token", "client_id": "app-1",
            "client_secret_env": "PF_TEST_OAUTH_SECRET"})
        runtime = make_runtime(tmp_path, sqlite_url, [config])
        await runtime.start()
        try:
            report = await ingest.poll_once(runtime)
            assert (report.new, report.errors) == (1, {})
            assert imap.count(user, PROCESSED) == 1
            assert idp.token_requests == 1

            # a wrong secret is refused at the token endpoint: the mailbox is reported down
            monkeypatch.setenv("PF_TEST_OAUTH_SECRET", "wrong")
            report = await ingest.poll_once(runtime)
            assert "invalid_client" in report.errors[name]
        finally:
            await runtime.stop()


class IdleDovecot(DovecotServer):
    """dovecot learns of new mail by inotify, and when the machine is out of inotify
    instances (shared CI machines) by checking every mailbox_idle_check_interval (30 s by
    default): make that short, so the test does not depend on inotify."""

    def _capability_line(self) -> str:
        return "mailbox_idle_check_interval = 1 secs\n"


async def test_idle_wakes_the_poller(sqlite_url: str, tmp_path: Path) -> None:
    """With a poll interval far longer than the test waits, only IDLE can bring the new
    messages in."""
    user = f"u{uuid.uuid4().hex[:8]}@example.test"
    name = f"idle-{uuid.uuid4().hex[:8]}"
    with IdleDovecot(tmp_path / "idle") as server:
        server.add_user(user, "secret")
        runtime = make_runtime(tmp_path, sqlite_url, [imap_config(server, name, user)])
        runtime = Runtime(runtime.settings.model_copy(update={"poll_interval": 600.0}))
        await runtime.start()
        try:
            runtime.spawn(run_mailbox(runtime, runtime.tenant.mailboxes[0]), "idle-test")

            await asyncio.sleep(1.0)  # the first (empty) poll is done: waiting in IDLE
            for n in (1, 2):
                server.append(user, "INBOX", mail(f"Besked {n}"))
                await async_wait_for(lambda n=n: _count_is(runtime, name, n), timeout=15)
            assert server.count(user, PROCESSED) == 2
        finally:
            await runtime.stop()


async def _count_is(runtime: Runtime, mailbox: str, n: int) -> bool:
    return len(await items_of(runtime, mailbox)) == n


async def test_without_idle_it_polls(dovecot: DovecotServer, sqlite_url: str,  # noqa: F811
                                     tmp_path: Path) -> None:
    user = f"u{uuid.uuid4().hex[:8]}@example.test"
    name = f"poll-{uuid.uuid4().hex[:8]}"
    dovecot.add_user(user, "secret")
    runtime = make_runtime(tmp_path, sqlite_url, [imap_config(dovecot, name, user, idle=False)])
    await runtime.start()
    try:
        mailbox = ImapMailbox(runtime.tenant.mailboxes[0])
        await mailbox.list_new()
        loop = asyncio.get_running_loop()
        started = loop.time()
        await mailbox.wait(0.3)  # no IDLE: just the interval
        assert loop.time() - started >= 0.3
        await mailbox.close()
        runtime.spawn(run_mailbox(runtime, runtime.tenant.mailboxes[0]), "poll-test")
        dovecot.append(user, "INBOX", mail("Pollet"))
        await async_wait_for(lambda: _count_is(runtime, name, 1), timeout=15)
    finally:
        await runtime.stop()


async def test_dead_mailbox_in_health(dovecot: DovecotServer, sqlite_url: str,  # noqa: F811
                                      tmp_path: Path) -> None:
    """A mailbox nobody answers for is retried with growing delays and shows in
    /health/mailboxes (503, with the error) while the other mailbox carries on."""
    user = f"u{uuid.uuid4().hex[:8]}@example.test"
    good, dead = f"good-{uuid.uuid4().hex[:8]}", f"dead-{uuid.uuid4().hex[:8]}"
    dovecot.add_user(user, "secret")
    runtime = make_runtime(tmp_path, sqlite_url, [
        imap_config(dovecot, dead, user, port=free_port()), imap_config(dovecot, good, user)])
    await runtime.start()
    try:
        await ingest.start(runtime)
        dovecot.append(user, "INBOX", mail("Stadig modtaget"))
        await async_wait_for(lambda: _count_is(runtime, good, 1), timeout=15)

        async def dead_twice() -> bool:
            async with runtime.uow() as uow:
                row = await uow.session.get(MailboxStatus, dead)
                return row is not None and row.failures >= 2

        await async_wait_for(dead_twice, timeout=15)
        app = create_app(runtime.settings)
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
            response = await client.get("/health/mailboxes")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "degraded"
        by_name = {m["name"]: m for m in body["mailboxes"]}
        assert by_name[good]["up"] and by_name[good]["last_ok_at"]
        assert not by_name[dead]["up"] and by_name[dead]["failures"] >= 2
        assert "ConnectionRefused" in by_name[dead]["last_error"]
        assert by_name[dead]["next_attempt_at"] > by_name[dead]["checked_at"]
    finally:
        await runtime.stop()


def test_backoff_grows_and_is_capped() -> None:
    assert [backoff(10, n) for n in range(5)] == [10, 10, 20, 40, 80]
    assert backoff(10, 30) == MAX_BACKOFF


async def test_loops_end_at_ingest(dovecot: DovecotServer, sqlite_url: str,  # noqa: F811
                                   tmp_path: Path) -> None:
    """Our own receipt, an out-of-office answer to it and a bounce are taken in (raw kept) and
    end as not relevant with the reason; a person answering a receipt is a normal item."""
    user = f"u{uuid.uuid4().hex[:8]}@example.test"
    name = f"loop-{uuid.uuid4().hex[:8]}"
    dovecot.add_user(user, "secret")
    domain = "demoby.dk"  # the bundled tenant's municipality domain
    receipt_id = f"<receipt-{uuid.uuid4()}@{domain}>"
    own = mail("Kvittering for modtagelse", receipt_id)
    ooo = _with_headers(mail("Automatisk svar: Kvittering"),
                        {"Auto-Submitted": "auto-replied", "In-Reply-To": receipt_id})
    bounce = (b"From: MAILER-DAEMON@mx.example.dk\r\nTo: post@demoby.dk\r\n"
              b"Subject: Undelivered Mail Returned to Sender\r\n"
              b"Message-ID: <bounce-1@mx.example.dk>\r\nMIME-Version: 1.0\r\n"
              b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n"
              b"\r\n--b\r\nContent-Type: text/plain\r\n\r\nNot delivered\r\n--b--\r\n")
    human = _with_headers(mail("Sv: Kvittering for modtagelse"), {"In-Reply-To": receipt_id})
    for raw in (own, ooo, bounce, human):
        dovecot.append(user, "INBOX", raw)
    runtime = make_runtime(tmp_path, sqlite_url, [imap_config(dovecot, name, user)])
    await runtime.start()
    try:
        report = await ingest.poll_once(runtime)
        assert (report.new, report.loops, report.errors) == (1, 3, {})
        assert dovecot.count(user, PROCESSED) == 4
        items = {i.subject: i for i in await items_of(runtime, name)}
        assert items["Sv: Kvittering for modtagelse"].state == "received"
        expected = {"Kvittering for modtagelse": "own_message",
                    "Automatisk svar: Kvittering": "auto_reply",
                    "Undelivered Mail Returned to Sender": "delivery_report"}
        for subject, kind in expected.items():
            item = items[subject]
            assert item.state == "not_relevant" and item.decision is not None
            assert item.decision["loop"] == kind and item.decision["receipt"] is False
            assert item.decision["reasons"][0].startswith("loop protection:")
            assert runtime.blobs.get_sync(item.raw_sha256 or "")
        assert (REGISTRY.get_sample_value("postfordeler_loops_stopped_total",
                                          {"kind": "own_message"}) or 0) >= 1
    finally:
        await runtime.stop()


def _with_headers(raw: bytes, headers: dict[str, str]) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
    return extra + raw
