"""Delivery into a folder of a unit's mailbox (org.yaml `delivery.folder`): IMAP against a real
dovecot, EWS and Graph against the local servers (tests/support). The copy lands in the right
folder, unread and not a draft, with the decision's headers and the original attached; exactly
once across redelivery, across a crash between storing and recording "sent", and through the
delivery consumer; forward and folder both; a folder in an unknown or misconfigured mailbox
stops the start."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select, update

from services.delivery import Deliveries, folder_message_id
from services.delivery import start as start_delivery
from services.delivery.deliver import folder_row_id
from shared.auth import Role
from shared.contracts import ItemRouted
from shared.db.models import AuditEntry, Delivery
from shared.errors import ConfigurationError, TransientError
from shared.mail import SmtpSender
from shared.runtime import Runtime
from shared.settings import Settings
from tests.conftest import async_wait_for
from tests.support.app import Api, make_tenant, running, serve_api
from tests.support.dovecot import DovecotServer
from tests.support.ews_server import EwsServer
from tests.support.folder_targets import (
    FOLDER,
    SHARED,
    SVC,
    SVC_ADDRESS,
    ews_box,
    graph_box,
    imap_box,
    tenant_with,
)
from tests.support.graph_server import GraphServer
from tests.support.routed import assert_decision_headers, parse, routed_item
from tests.support.smtp import SmtpServer, smtp_server  # noqa: F401 - fixture


@pytest.fixture
def dovecot(tmp_path: Path) -> Iterator[DovecotServer]:
    with DovecotServer(tmp_path / "dovecot", separator=".") as server:  # maildir's default
        server.add_user("parkering", "imap-secret")
        yield server


@pytest.fixture
def ews(monkeypatch: pytest.MonkeyPatch) -> Iterator[EwsServer]:
    with EwsServer() as server:
        server.add_user(SVC, "ews-secret", SVC_ADDRESS)
        server.add_mailbox(SHARED)
        server.grant_delegate(SHARED, SVC_ADDRESS)
        monkeypatch.setenv("PF_TEST_EWS_PASSWORD", "ews-secret")
        yield server


@pytest.fixture
def graph(monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphServer]:
    with GraphServer() as server:
        server.add_client("postfordeler", "graph-secret")
        server.add_user(SHARED)
        monkeypatch.setenv("PF_TEST_GRAPH_SECRET", "graph-secret")
        yield server


class Setup:
    def __init__(self, api: Api, runtime: Runtime, deliveries: Deliveries) -> None:
        self.api, self.runtime, self.deliveries = api, runtime, deliveries

    async def routed(self, unit: str = "parkering", sensitive: bool = False) -> ItemRouted:
        return await routed_item(self.api, unit, sensitive)

    async def row(self, event: ItemRouted) -> Delivery:
        async with self.api.uow() as uow:
            row = await uow.session.get(Delivery, folder_row_id(event.message_id))
            assert row is not None
            return row

    async def crash_after_store(self, event: ItemRouted) -> None:
        """As if the process died after the copy was stored, before "sent" was committed."""
        async with self.api.uow() as uow:
            await uow.session.execute(update(Delivery).where(
                Delivery.id == folder_row_id(event.message_id)).values(status="pending",
                                                                        sent_at=None))
            await uow.commit()

    async def audit(self, event: ItemRouted) -> list[dict[str, Any]]:
        await self.runtime.chain_audit()  # entries are chained moments after their commit
        async with self.api.uow() as uow:
            rows = (await uow.session.execute(select(AuditEntry.details).where(
                AuditEntry.item_id == event.item_id, AuditEntry.action == "delivered")
                .order_by(AuditEntry.seq)))
            return [dict(d) for d in rows.scalars()]


@pytest.fixture
async def make_setup(db_url: str, tmp_path: Path,
                     smtp_server: SmtpServer,  # noqa: F811
                     monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    monkeypatch.setenv("PF_TEST_IMAP_PASSWORD", "imap-secret")
    async with contextlib.AsyncExitStack() as opened:  # closed in reverse: runtime last
        async def make(mailbox: dict[str, Any], **tenant: Any) -> Setup:
            settings = Settings(
                data_dir=tmp_path / "data", database_url=db_url,  # type: ignore[arg-type]
                amqp_url="memory://",  # type: ignore[arg-type]
                tenant_dir=tenant_with(make_tenant(tmp_path / "tenant"), mailbox,  # type: ignore[arg-type]
                                       **tenant),
                smtp_host=smtp_server.host, smtp_port=smtp_server.port, smtp_timeout=5,
                retry_base_delay=0.05, retry_max_attempts=4, ops_check_interval=3600)
            runtime = await opened.enter_async_context(running(settings))
            api = await opened.enter_async_context(
                serve_api(Api, settings, bus=runtime.bus))
            deliveries = Deliveries(runtime.uow, runtime.tenant, runtime.blobs,
                                    SmtpSender(settings))
            opened.push_async_callback(deliveries.close)
            return Setup(api, runtime, deliveries)

        yield make


def assert_copy(msg: EmailMessage, event: ItemRouted) -> None:
    assert msg["Message-ID"] == folder_message_id(event.message_id, "demoby.dk")
    assert_decision_headers(msg, event)
    assert msg["Subject"] == "[Postfordeler] Parkeringsafgift AB12345"
    [attached] = list(msg.iter_attachments())
    assert attached.get_content_type() == "message/rfc822"
    assert attached.get_content()["Message-ID"] == "<orig-1@example.dk>"


def imap_flags(dovecot: DovecotServer, folder: str) -> list[tuple[bytes, ...]]:
    client = dovecot._client("parkering")
    try:
        client.select_folder(folder, readonly=True)
        data = client.fetch(client.search(["ALL"]), ["FLAGS"])
        return [tuple(d[b"FLAGS"]) for d in data.values()]
    finally:
        client.logout()


async def test_imap_folder_copy_exactly_once(make_setup: Any, dovecot: DovecotServer,
                                             smtp_server: SmtpServer) -> None:  # noqa: F811
    setup = await make_setup(imap_box(dovecot))
    event = await setup.routed()
    assert await setup.deliveries.deliver(event)
    folder = "Postfordeler.Parkering"  # "/" in the configuration, the server's "." here
    [raw] = dovecot.fetch_all("parkering", folder)
    assert_copy(parse(raw), event)
    [flags] = imap_flags(dovecot, folder)
    assert b"\\Seen" not in flags and b"\\Draft" not in flags  # unread, not a draft
    # Subscribed too: mail clients that list subscribed folders only must show it.
    client = dovecot._client("parkering")
    try:
        assert folder in {name for _flags, _delim, name in client.list_sub_folders()}
    finally:
        client.logout()
    row = await setup.row(event)
    assert (row.channel, row.recipient, row.status, row.attempts) == (
        "imap", f"parkering-imap:{FOLDER}", "sent", 1)

    assert not await setup.deliveries.deliver(event)  # a redelivered event: nothing
    await setup.crash_after_store(event)
    assert await setup.deliveries.deliver(event)  # recorded now, not stored again
    assert dovecot.count("parkering", folder) == 1
    assert [d.get("found_in_folder") for d in await setup.audit(event)] == [None, True]
    assert smtp_server.count() == 0  # the unit is not forwarded to


async def test_forward_and_folder_both_through_the_consumer(
        make_setup: Any, dovecot: DovecotServer,
        smtp_server: SmtpServer) -> None:  # noqa: F811
    setup = await make_setup(imap_box(dovecot), forward=True)
    await start_delivery(setup.runtime)
    event = await setup.routed()
    await asyncio.gather(*(setup.runtime.bus.publish(event) for _ in range(3)))

    async def both() -> bool:
        return smtp_server.count() >= 1 and dovecot.count("parkering",
                                                          "Postfordeler.Parkering") >= 1
    await async_wait_for(both, timeout=15, interval=0.05)
    await setup.runtime.bus.publish(event)
    await asyncio.sleep(0.5)
    assert smtp_server.count() == 1
    assert dovecot.count("parkering", "Postfordeler.Parkering") == 1
    clerk = await setup.api.key(Role.CLERK, units=("parkering",))
    body = (await setup.api.client.get(f"/api/v1/items/{event.item_id}",
                                       headers=clerk)).json()
    assert sorted((d["recipient"], d["status"]) for d in body["deliveries"]) == [
        ("parkering-imap:Postfordeler/Parkering", "sent"), ("parkering@demoby.dk", "sent")]


async def test_imap_unreachable_is_retried_then_failed_visibly(
        make_setup: Any, dovecot: DovecotServer) -> None:
    setup = await make_setup(imap_box(dovecot))
    dovecot.stop()
    await start_delivery(setup.runtime)
    event = await setup.routed()
    await setup.runtime.bus.publish(event)

    async def failed() -> bool:
        async with setup.api.uow() as uow:
            row = await uow.session.get(Delivery, folder_row_id(event.message_id))
            return row is not None and row.status == "failed"
    await async_wait_for(failed, timeout=15, interval=0.05)
    row = await setup.row(event)
    assert row.attempts == 4  # retry_max_attempts
    assert row.last_error


async def test_sensitive_item_is_filed_as_a_notice(make_setup: Any,
                                                   dovecot: DovecotServer) -> None:
    setup = await make_setup(imap_box(dovecot))
    if "sensitive" not in ItemRouted.model_fields:
        pytest.skip("no sensitive marks in this version of the contracts")
    event = await setup.routed(sensitive=True)
    assert await setup.deliveries.deliver(event)
    [raw] = dovecot.fetch_all("parkering", "Postfordeler.Parkering")
    msg = parse(raw)
    assert msg["X-Postfordeler-Sensitive"] == "yes"
    assert b"Parkeringsafgift" not in raw and b"afgift" not in raw
    assert not list(msg.iter_attachments())


async def test_ews_folder_copy_exactly_once(make_setup: Any, ews: EwsServer) -> None:
    setup = await make_setup(ews_box(ews))
    event = await setup.routed()
    assert await setup.deliveries.deliver(event)
    [item] = ews.folder_items(SHARED, FOLDER)
    assert not item.is_draft and not item.is_read
    assert_copy(parse(item.mime), event)
    creates = [b for b in ews.bodies if b"CreateItem " in b or b"<m:CreateItem" in b]
    assert len(creates) == 1 and b'MessageDisposition="SaveOnly"' in creates[0]
    assert (await setup.row(event)).channel == "ews"

    assert not await setup.deliveries.deliver(event)
    await setup.crash_after_store(event)
    assert await setup.deliveries.deliver(event)
    assert len(ews.folder_items(SHARED, FOLDER)) == 1
    assert ews.operations(SHARED).count("CreateItem") == 1
    assert "FindItem" in ews.operations(SHARED)


async def test_graph_folder_copy_exactly_once(make_setup: Any, graph: GraphServer) -> None:
    setup = await make_setup(graph_box(graph))
    event = await setup.routed()
    assert await setup.deliveries.deliver(event)
    [message] = graph.messages_in(SHARED, FOLDER)
    assert not message.is_draft and not message.is_read
    msg = parse(message.mime)
    assert dict(message.headers)["X-Postfordeler-Item"] == str(event.item_id)
    assert msg["X-Postfordeler-Decision"] == "routed"
    assert msg["Subject"] == "[Postfordeler] Parkeringsafgift AB12345"
    assert msg["Reply-To"] == "borger@example.dk"
    [attached] = list(msg.iter_attachments())
    assert attached.get_content()["Message-ID"] == "<orig-1@example.dk>"
    assert (await setup.row(event)).channel == "graph"

    graph.throttle(1, retry_after=0)  # a 429 on the way is waited out
    await setup.crash_after_store(event)
    assert await setup.deliveries.deliver(event)
    assert len(graph.messages_in(SHARED, FOLDER)) == 1
    posts = [p for m, p in graph.requests if m == "POST" and p.endswith("/messages")]
    assert len(posts) == 1


async def test_graph_create_answered_504_is_looked_up_again_not_posted_again(
        make_setup: Any, graph: GraphServer) -> None:
    # A 504 on the create may come after Exchange stored the message: the writer must look for
    # it before creating again, not repeat the POST blindly.
    setup = await make_setup(graph_box(graph))
    event = await setup.routed()
    graph.lose_answers(1)
    with pytest.raises(TransientError):
        await setup.deliveries.deliver(event)  # the bus retries the whole delivery
    assert await setup.deliveries.deliver(event)
    assert len(graph.messages_in(SHARED, FOLDER)) == 1
    posts = [p for m, p in graph.requests if m == "POST" and p.endswith("/messages")]
    assert len(posts) == 1
    assert (await setup.row(event)).status == "sent"
    assert (await setup.audit(event))[-1].get("found_in_folder") is True


async def test_a_folder_in_an_unknown_or_misconfigured_mailbox_stops_the_start(
        make_setup: Any, dovecot: DovecotServer) -> None:
    setup = await make_setup(imap_box(dovecot))
    org = setup.runtime.tenant.directory / "mailboxes.yaml"
    org.write_text(yaml.safe_dump({"mailboxes": [], "delivery_mailboxes": []}))
    runtime = Runtime(setup.runtime.settings)
    with pytest.raises(ConfigurationError, match="parkering-imap"):
        await start_delivery(runtime)
    ews = {"name": "parkering-ews", "kind": "ews", "address": SHARED}  # no ews_url
    tenant_with(runtime.tenant.directory, ews)
    runtime.tenant = type(runtime.tenant)(runtime.tenant.directory)  # read afresh
    with pytest.raises(ConfigurationError, match="ews_url"):
        await start_delivery(runtime)
    await runtime.engine.dispose()


async def test_a_folder_ingest_reads_stops_the_start(make_setup: Any,
                                                     dovecot: DovecotServer) -> None:
    # A copy put where ingest reads (or files what it read) would be taken in as our own mail
    # and moved to the processed folder: the unit would never see it.
    setup = await make_setup(imap_box(dovecot))
    directory = setup.runtime.tenant.directory
    box = {**imap_box(dovecot), "processed_folder": "Arkiv/Behandlet"}
    for path in ("INBOX", "inbox", "Arkiv/Behandlet/", "Postfordeler/Fejl"):
        tenant_with(directory, box, path=path)
        (directory / "mailboxes.yaml").write_text(yaml.safe_dump({"mailboxes": [box]}))
        runtime = Runtime(setup.runtime.settings)
        with pytest.raises(ConfigurationError, match="ingest reads"):
            await start_delivery(runtime)
        await runtime.engine.dispose()
    tenant_with(directory, box, path=FOLDER)  # another folder of that mailbox is fine
    (directory / "mailboxes.yaml").write_text(yaml.safe_dump({"mailboxes": [box]}))
    deliveries = Deliveries(setup.runtime.uow, type(setup.runtime.tenant)(directory),
                            setup.runtime.blobs, SmtpSender(setup.runtime.settings))
    deliveries.check()


def test_unit_delivery_defaults_to_the_forward(tmp_path: Path) -> None:
    from shared.tenant import Tenant

    tenant = Tenant(make_tenant(tmp_path / "t"))
    unit = tenant.unit("parkering")
    assert unit.delivery.forward and unit.delivery.folder is None
    assert unit.mailbox == "parkering@demoby.dk"
