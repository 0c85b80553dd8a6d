"""Items a rule marked sensitive (`decision.sensitive`, `ItemRouted.sensitive`), on SQLite and
PostgreSQL: only the unit's clerks and auditors see them in the API, the forward to the unit's
functional mailbox is a notice without body, attachments, subject or sender, and a clerk's
re-route keeps the mark."""

from __future__ import annotations

import uuid

from services.delivery import Deliveries, delivery_message_id
from shared.auth import Role
from shared.blobs import FileBlobStore
from shared.contracts import ItemRouted, ItemState, RouteOutcome
from shared.mail import SmtpSender
from shared.runtime import Runtime
from tests.integration.test_access import Api
from tests.integration.test_delivery import settings  # noqa: F401 - fixture
from tests.support.app import runtime_api, runtime_fixture  # noqa: F401 - fixtures
from tests.support.routed import RAW, parse
from tests.support.smtp import SmtpServer, smtp_server  # noqa: F401 - fixture


async def marked_item(api: Api, unit: str = "parkering", *,  # noqa: F811
                      subject: str = "Parkering",
                      raw_sha256: str | None = None) -> uuid.UUID:
    item_id = await api.item(unit, subject=subject, raw_sha256=raw_sha256)
    async with api.uow() as uow:
        item = await uow.item(item_id)
        item.decision = {**(item.decision or {}), "sensitive": True}
        await uow.commit()
    return item_id


async def test_marked_items_only_for_the_units_clerks_and_auditors(api: Api) -> None:  # noqa: F811
    hidden = f"Fortroligt {uuid.uuid4().hex}"
    secret = await marked_item(api, subject=hidden)
    plain = await api.item("parkering")
    unmarked = await api.item(None, ItemState.TRIAGE)  # no unit, no decision mark: visible
    admin = await api.key(Role.ADMINISTRATOR, name="ops")
    auditor = await api.key(Role.AUDITOR, name="revisor")
    own_clerk = await api.key(Role.CLERK, units=("parkering",))
    other_clerk = await api.key(Role.CLERK, units=("jobcenter",), name="DMI")

    listed = (await api.client.get("/api/v1/items", headers=admin,
                                   params={"limit": 1000})).json()
    ids = {i["id"] for i in listed["items"]}
    assert {str(plain), str(unmarked)} <= ids and str(secret) not in ids
    assert hidden not in str(listed)
    for headers in (admin, other_clerk):
        r = await api.client.get(f"/api/v1/items/{secret}", headers=headers)
        assert r.status_code == 404 and hidden not in r.text
    for headers in (auditor, own_clerk):
        r = await api.client.get(f"/api/v1/items/{secret}", headers=headers)
        assert r.status_code == 200 and r.json()["subject"] == hidden
        listed = (await api.client.get("/api/v1/items", headers=headers,
                                       params={"limit": 1000})).json()
        assert str(secret) in {i["id"] for i in listed["items"]}


async def test_the_forward_of_a_marked_item_is_a_notice(
        api: Api, runtime: Runtime, smtp_server: SmtpServer) -> None:  # noqa: F811
    raw = await FileBlobStore(api.settings.blobs_path).put(RAW, "message/rfc822")
    item_id = await marked_item(api, subject="Parkeringsafgift AB12345", raw_sha256=raw.sha256)
    async with api.uow() as uow:
        correlation = (await uow.item(item_id)).correlation_id
    event = ItemRouted(correlation_id=correlation, producer="router", item_id=item_id,
                       outcome=RouteOutcome.ROUTED, unit="parkering", clerk="ALA",
                       reasons=("parkering: rule 'Nummerplade' matched plate AB12345",),
                       sensitive=True)
    deliveries = Deliveries(runtime.uow, runtime.tenant, runtime.blobs,
                            SmtpSender(api.settings))
    assert await deliveries.deliver(event)
    [received] = smtp_server.wait_for(1)
    assert received.rcpt_tos == ("parkering@demoby.dk",)
    msg = parse(received.raw)
    assert msg["Message-ID"] == delivery_message_id(event.message_id, "demoby.dk")
    assert msg["X-Postfordeler-Item"] == str(item_id)
    assert msg["X-Postfordeler-Sensitive"] == "yes"
    assert not msg.is_multipart() and list(msg.iter_attachments()) == []
    assert msg["Reply-To"] is None and msg["X-Postfordeler-Reason"] is None
    body = msg.get_content()
    assert f"/ui/items/{item_id}" in body and "fortrolig" in body
    for leak in (b"AB12345", b"faaet en afgift", b"borger@example.dk", b"Nummerplade"):
        assert leak not in received.raw, leak


async def test_a_reroute_keeps_the_mark(api: Api) -> None:  # noqa: F811
    secret = await marked_item(api, "hovedpost", subject="Fortroligt")
    async with api.uow() as uow:
        item = await uow.item(secret)
        item.decision = {**(item.decision or {}), "receipt_template": "klage"}
        await uow.commit()
    triage = await api.key(Role.CLERK, units=("hovedpost",), name="HP")
    r = await api.client.post(f"/api/v1/items/{secret}/reroute", headers=triage,
                              json={"unit": "parkering", "reason": "hører til parkering"})
    assert r.status_code == 200, r.text
    async with api.uow() as uow:
        from sqlalchemy import select

        from shared.db.models import OutboxMessage
        payloads = (await uow.session.execute(select(OutboxMessage.payload).where(
            OutboxMessage.item_id == secret, OutboxMessage.topic == "item.routed"))).scalars()
        [routed] = [ItemRouted.model_validate_json(p) for p in payloads]
    assert routed.sensitive and routed.receipt_template == "klage"
    admin = await api.key(Role.ADMINISTRATOR, name="ops")
    assert (await api.client.get(f"/api/v1/items/{secret}", headers=admin)).status_code == 404
