"""Delivery to units' functional mailboxes against a real SMTP server (aiosmtpd), on SQLite and
PostgreSQL: what the forward looks like, exactly once under redelivery and concurrency, a
re-route delivered anew, SMTP trouble retried, a refused mailbox failed visibly."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from services.delivery import Deliveries, delivery_message_id
from services.delivery import start as start_delivery
from shared.auth import Role
from shared.contracts import RouteOutcome
from shared.db.models import Delivery
from shared.mail import SmtpSender
from shared.runtime import Runtime
from shared.settings import Settings
from tests.conftest import async_wait_for
from tests.support.app import Api, app_settings, runtime_api, runtime_fixture  # noqa: F401 - fixtures
from tests.support.routed import assert_decision_headers, parse, routed_item
from tests.support.smtp import SmtpServer, smtp_server  # noqa: F401 - fixture


@pytest.fixture
def settings(db_url: str, tmp_path: Path, smtp_server: SmtpServer) -> Settings:  # noqa: F811
    return app_settings(db_url, tmp_path, smtp_host=smtp_server.host, smtp_port=smtp_server.port,
                        smtp_timeout=5, retry_base_delay=0.05, retry_max_attempts=4,
                        ops_check_interval=3600)


async def mails(server: SmtpServer, count: int) -> list[bytes]:
    """Wait without blocking the loop the consumers run in."""
    async def enough() -> bool:
        return server.count() >= count
    await async_wait_for(enough, timeout=10, interval=0.02)
    return server.raw_messages()


async def test_forward_carries_the_original_and_the_decision(
        api: Api, runtime: Runtime, smtp_server: SmtpServer) -> None:  # noqa: F811
    event = await routed_item(api)
    deliveries = Deliveries(runtime.uow, runtime.tenant, runtime.blobs,
                            SmtpSender(api.settings))
    assert await deliveries.deliver(event)
    [received] = smtp_server.wait_for(1)  # the delivery is done: waiting blocks nothing
    assert received.rcpt_tos == ("parkering@demoby.dk",)
    msg = parse(received.raw)
    assert msg["Message-ID"] == delivery_message_id(event.message_id, "demoby.dk")
    assert_decision_headers(msg, event)
    assert msg["Reply-To"] == "borger@example.dk"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Subject"] == "[Postfordeler] Parkeringsafgift AB12345"
    [attached] = [p for p in msg.iter_attachments()]
    assert attached.get_content_type() == "message/rfc822"
    original = attached.get_content()
    assert original["Message-ID"] == "<orig-1@example.dk>"
    assert original.get_content().strip() == "Jeg har faaet en afgift."


async def test_exactly_once_under_redelivery_and_concurrency(
        api: Api, runtime: Runtime, smtp_server: SmtpServer) -> None:  # noqa: F811
    await start_delivery(runtime)
    event = await routed_item(api)
    # the same event three times at once and twice later (a broker redelivery, a reconciler
    # re-publish): one forward
    await asyncio.gather(*(runtime.bus.publish(event) for _ in range(3)))
    await mails(smtp_server, 1)
    await runtime.bus.publish(event)
    await runtime.bus.publish(event)
    await asyncio.sleep(0.5)
    assert smtp_server.count() == 1
    admin = await api.key(Role.CLERK, units=("parkering",))
    body = (await api.client.get(f"/api/v1/items/{event.item_id}", headers=admin)).json()
    [delivery] = body["deliveries"]
    assert (delivery["status"], delivery["recipient"], delivery["attempts"]) == (
        "sent", "parkering@demoby.dk", 1)


async def test_reroute_is_delivered_anew_and_stale_events_are_not(
        api: Api, runtime: Runtime, smtp_server: SmtpServer) -> None:  # noqa: F811
    await start_delivery(runtime)
    event = await routed_item(api)
    await runtime.bus.publish(event)
    await mails(smtp_server, 1)
    clerk = await api.key(Role.CLERK, units=("parkering",))
    r = await api.client.post(f"/api/v1/items/{event.item_id}/reroute", headers=clerk,
                              json={"unit": "vej-park", "reason": "vejskilt, ikke afgift"})
    assert r.status_code == 200, r.text
    second = parse((await mails(smtp_server, 2))[1])
    assert second["To"] == "vejpark@demoby.dk"
    assert second["X-Postfordeler-Decision"] == "rerouted"
    assert second["Subject"].startswith("[Postfordeler, omfordelt]")
    assert "vejskilt" in second["X-Postfordeler-Reason"]
    # the first decision arriving again now is stale: parkering must not get it a second time
    await runtime.bus.publish(event.model_copy(update={"message_id": uuid.uuid4()}))
    await asyncio.sleep(0.5)
    assert smtp_server.count() == 2
    vp = await api.key(Role.CLERK, units=("vej-park",))
    body = (await api.client.get(f"/api/v1/items/{event.item_id}", headers=vp)).json()
    assert [(d["unit"], d["status"]) for d in body["deliveries"]] == [
        ("parkering", "sent"), ("vej-park", "sent")]


async def test_smtp_down_is_retried_and_a_refused_mailbox_fails_visibly(
        api: Api, runtime: Runtime, smtp_server: SmtpServer) -> None:  # noqa: F811
    await start_delivery(runtime)
    smtp_server.refuse(451)
    event = await routed_item(api)
    await runtime.bus.publish(event)

    async def attempted() -> bool:
        async with api.uow() as uow:
            row = await uow.session.get(Delivery, event.message_id)
            return row is not None and row.attempts >= 2
    await async_wait_for(attempted, timeout=10)
    smtp_server.accept()
    await mails(smtp_server, 1)

    smtp_server.refuse(550)
    refused = await routed_item(api, unit="affald")
    await runtime.bus.publish(refused)

    async def failed() -> bool:
        async with api.uow() as uow:
            row = await uow.session.get(Delivery, refused.message_id)
            return row is not None and row.status == "failed"
    await async_wait_for(failed, timeout=10)
    clerk = await api.key(Role.CLERK, units=("affald",))
    body = (await api.client.get(f"/api/v1/items/{refused.item_id}", headers=clerk)).json()
    assert body["deliveries"][0]["status"] == "failed"
    assert "550" in body["deliveries"][0]["last_error"]
    assert smtp_server.count() == 1


async def test_units_without_a_mailbox_and_triage_are_not_forwarded(
        api: Api, runtime: Runtime, smtp_server: SmtpServer) -> None:  # noqa: F811
    deliveries = Deliveries(runtime.uow, runtime.tenant, runtime.blobs,
                            SmtpSender(api.settings))
    triage = await routed_item(api, unit="hovedpost")
    assert not await deliveries.deliver(triage.model_copy(
        update={"outcome": RouteOutcome.TRIAGE}))
    unknown = await routed_item(api, unit="no-such-unit")
    assert not await deliveries.deliver(unknown)
    assert smtp_server.count() == 0
