"""Exchange on premises (EWS through exchangelib) against the local EWS server
(tests/support/ews_server.py): poll into items, move only after store, incremental sync that
survives a restart, shared mailboxes by delegate access and impersonation, OAuth 2.0 (client
credentials, app-only impersonation), a dead endpoint."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from exchangelib import DELEGATE, Account, Build, Configuration, Version
from exchangelib.transport import OAUTH2
from sqlalchemy import select

from services import ingest
from services.ingest.ews import EwsMailbox
from services.ingest.syncstate import DbSyncStore
from shared.db.models import MailboxStatus, MailboxSync
from shared.errors import ConfigurationError
from shared.ews import _oauth2_credentials
from shared.runtime import Runtime
from shared.tenant import MailboxConfig
from tests.conftest import async_wait_for, free_port
from tests.integration.test_ingest_imap import NOT_A_MAIL, items_of, mail, make_runtime
from tests.support.ews_server import EwsServer
from tests.support.graph_server import GraphServer

POST = "post@eksempelby.dk"
BYG = "byggesag@eksempelby.dk"
SVC = "EKSEMPELBY\\svc-postfordeler"
SVC_ADDRESS = "svc-postfordeler@eksempelby.dk"


def ews_config(ews: EwsServer, name: str, address: str = POST, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "ews", "address": address, "ews_url": ews.url,
            "ews_auth": "basic", "username": SVC, "password_env": "PF_TEST_EWS_PASSWORD",
            "ews_version": "15.1.2507.6", **extra}


@pytest.fixture
def ews(monkeypatch: pytest.MonkeyPatch) -> Any:
    with EwsServer() as server:
        server.add_user(SVC, "ews-secret", SVC_ADDRESS)
        server.add_mailbox(POST)
        server.add_mailbox(BYG)
        server.grant_delegate(POST, SVC_ADDRESS)  # full access, as Add-MailboxPermission
        monkeypatch.setenv("PF_TEST_EWS_PASSWORD", "ews-secret")
        yield server


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_poll_dedupe_fail_and_move_after_store(ews: EwsServer, db_url: str,
                                                     tmp_path: Path) -> None:
    name = unique("ews")
    twice = f"<{uuid.uuid4()}@example.dk>"
    ews.deliver(POST, mail("Ansøgning om byggetilladelse", twice))
    ews.deliver(POST, mail("Ansøgning om byggetilladelse (igen)", twice))
    ews.deliver(POST, NOT_A_MAIL)
    ews.deliver(POST, mail("Klage over vejarbejde"))
    runtime = make_runtime(tmp_path, db_url, [ews_config(ews, name)])
    await runtime.start()
    try:
        report = await ingest.poll_once(runtime)
        assert (report.new, report.duplicates, report.failed, report.errors) == (2, 1, 1, {})
        assert ews.folder_messages(POST, "Inbox") == []
        assert len(ews.folder_messages(POST, "Postfordeler/Behandlet")) == 3
        assert ews.folder_messages(POST, "Postfordeler/Fejl") == [NOT_A_MAIL]
        items = await items_of(runtime, name)
        assert sorted(i.state for i in items) == ["failed", "received", "received"]
        first = next(i for i in items if i.message_id == twice)
        assert first.subject == "Ansøgning om byggetilladelse"  # the earlier copy is the item
        assert all(i.sender == "borger@example.dk" for i in items if i.state == "received")
        # exchangelib's requests, as the real server sees them: MIME asked for, ids moved
        assert {"SyncFolderItems", "GetItem", "MoveItem"} <= set(ews.operations(POST))
        assert any(b"item:MimeContent" in body for body in ews.bodies)

        again = await ingest.poll_once(runtime)
        assert (again.new, again.duplicates, again.failed, again.errors) == (0, 0, 0, {})
    finally:
        await runtime.stop()


async def test_message_stays_in_inbox_until_stored(ews: EwsServer, sqlite_url: str,
                                                   tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A message whose raw bytes cannot be stored is not moved; the next poll takes it in."""
    name = unique("ews")
    runtime = make_runtime(tmp_path, sqlite_url, [ews_config(ews, name)])
    await runtime.start()
    try:
        ews.deliver(POST, mail("Første"))
        disk_full = mail("Anden, disken er fuld")
        ews.deliver(POST, disk_full)
        put = runtime.blobs.put

        async def failing_put(data: bytes, content_type: str) -> Any:
            if data == disk_full:
                raise OSError(28, "No space left on device")
            return await put(data, content_type)

        monkeypatch.setattr(runtime.blobs, "put", failing_put)
        report = await ingest.poll_once(runtime)
        assert report.new == 1 and "No space left" in report.errors[name]
        assert ews.folder_messages(POST, "Inbox") == [disk_full]
        assert len(ews.folder_messages(POST, "Postfordeler/Behandlet")) == 1

        monkeypatch.setattr(runtime.blobs, "put", put)
        report = await ingest.poll_once(runtime)
        assert (report.new, report.errors) == (1, {})
        assert ews.folder_messages(POST, "Inbox") == []
        assert len(await items_of(runtime, name)) == 2
    finally:
        await runtime.stop()


async def sync_row(runtime: Runtime, name: str) -> MailboxSync | None:
    async with runtime.uow() as uow:
        return await uow.session.get(MailboxSync, name)


async def test_incremental_sync_resumes_after_restart(ews: EwsServer, db_url: str,
                                                      tmp_path: Path) -> None:
    name = unique("ews")
    for n in range(3):
        ews.deliver(POST, mail(f"Henvendelse {n}"))
    runtime = make_runtime(tmp_path, db_url, [ews_config(ews, name)])
    await runtime.start()
    try:
        # every poll_once opens a new adapter, as a restarted process does
        assert (await ingest.poll_once(runtime)).new == 3
        assert ews.synced == [(3, 0)]
        row = await sync_row(runtime, name)
        assert row is not None and row.state and POST in row.scope

        newest = mail("Ny henvendelse")
        ews.deliver(POST, newest)
        assert (await ingest.poll_once(runtime)).new == 1
        # resumed from the saved state: the new message, and the three moved out since
        assert ews.synced == [(3, 0), (1, 3)]
        syncs = [body for body in ews.bodies if b"<m:SyncFolderItems>" in body]
        assert b"<m:SyncState>" not in syncs[0] and b"<m:SyncState>" in syncs[1]

        # a lost or corrupt state costs a full sync of what is still in the folder, no more
        ews.deliver(POST, mail("Efter tabt tilstand"))
        async with runtime.uow() as uow:
            saved = await uow.session.get(MailboxSync, name)
            assert saved is not None
            saved.state = "not-a-sync-state"
            await uow.commit()
        report = await ingest.poll_once(runtime)
        assert (report.new, report.errors) == (1, {})
        assert ews.synced[-1] == (1, 0)  # the state refused, then a full sync
        assert ews.operations().count("SyncFolderItems") == 4
        assert len(await items_of(runtime, name)) == 5
    finally:
        await runtime.stop()


async def test_state_saved_only_when_nothing_waits(ews: EwsServer, sqlite_url: str,
                                                   tmp_path: Path) -> None:
    """Listed but not yet taken in (the process died): the saved state is still the one from
    before, so the next adapter lists the message again."""
    name = unique("ews")
    runtime = make_runtime(tmp_path, sqlite_url, [ews_config(ews, name)])
    await runtime.start()
    config = runtime.tenant.mailboxes[0]
    try:
        first = EwsMailbox(config, DbSyncStore(runtime.uow))
        try:
            assert await first.list_new() == []
            saved = (await sync_row(runtime, name))
            assert saved is not None
            waiting = ews.deliver(POST, mail("Venter"))
            assert await first.list_new() == [waiting]
            assert (await sync_row(runtime, name)).state == saved.state  # type: ignore[union-attr]
        finally:
            await first.close()
        second = EwsMailbox(config, DbSyncStore(runtime.uow))
        try:
            assert await second.list_new() == [waiting]
            await second.mark_processed(waiting)
            assert await second.list_new() == []
            assert (await sync_row(runtime, name)).state != saved.state  # type: ignore[union-attr]
            # someone deletes a waiting message in Outlook: the sync reports it gone
            gone = ews.deliver(POST, mail("Slettes"))
            assert await second.list_new() == [gone]
            ews.delete(POST, gone)
            assert await second.list_new() == []
        finally:
            await second.close()
    finally:
        await runtime.stop()


async def test_shared_mailboxes_delegate_and_impersonation(ews: EwsServer, sqlite_url: str,
                                                           tmp_path: Path) -> None:
    shared, denied = unique("byggesag"), unique("uden-adgang")
    impersonated = unique("impersonation")
    ews.grant_delegate(BYG, SVC_ADDRESS)
    ews.add_mailbox("borgerservice@eksempelby.dk")
    ews.add_mailbox("sagsbehandler@eksempelby.dk")
    ews.deliver(BYG, mail("Byggesag 1"))
    ews.deliver("sagsbehandler@eksempelby.dk", mail("Ikke vores"))
    ews.deliver("borgerservice@eksempelby.dk", mail("Via impersonation"))
    runtime = make_runtime(tmp_path, sqlite_url, [
        ews_config(ews, shared, BYG),
        ews_config(ews, denied, "sagsbehandler@eksempelby.dk"),
        ews_config(ews, impersonated, "borgerservice@eksempelby.dk",
                   access_type="impersonation")])
    await runtime.start()
    try:
        report = await ingest.poll_once(runtime)
        assert report.new == 1
        assert "ErrorAccessDenied" in report.errors[denied]
        assert "ErrorImpersonateUserDenied" in report.errors[impersonated]
        assert [i.subject for i in await items_of(runtime, shared)] == ["Byggesag 1"]
        assert ews.folder_messages("sagsbehandler@eksempelby.dk", "Inbox") == [mail_of(
            ews, "sagsbehandler@eksempelby.dk")]
        # the service account logged on, the shared mailbox was opened
        assert {(who, mb) for op, who, mb in ews.requests if op == "MoveItem"} == {
            (SVC_ADDRESS, BYG)}

        ews.grant_impersonation(SVC_ADDRESS)  # New-ManagementRoleAssignment
        report = await ingest.poll_once(runtime)
        assert report.new == 1 and impersonated not in report.errors
        assert [i.subject for i in await items_of(runtime, impersonated)] == [
            "Via impersonation"]
        assert any(b"ExchangeImpersonation" in body for body in ews.bodies)
    finally:
        await runtime.stop()


def mail_of(ews: EwsServer, address: str) -> bytes:
    [only] = ews.folder_messages(address, "Inbox")
    return only


async def test_unreachable_endpoint_is_down_others_carry_on(ews: EwsServer, sqlite_url: str,
                                                            tmp_path: Path) -> None:
    good, dead = unique("ews-good"), unique("ews-dead")
    dead_url = f"http://127.0.0.1:{free_port()}/EWS/Exchange.asmx"
    runtime = make_runtime(tmp_path, sqlite_url, [
        ews_config(ews, dead, ews_url=dead_url), ews_config(ews, good)])
    await runtime.start()
    try:
        await ingest.start(runtime)
        ews.deliver(POST, mail("Kommer igennem"))

        async def taken_in() -> bool:
            async with runtime.uow() as uow:
                row = await uow.session.get(MailboxStatus, good)
            return row is not None and row.up and len(await items_of(runtime, good)) == 1

        async def dead_twice() -> bool:
            async with runtime.uow() as uow:
                row = await uow.session.get(MailboxStatus, dead)
                return row is not None and not row.up and row.failures >= 2

        await async_wait_for(taken_in, timeout=15)
        await async_wait_for(dead_twice, timeout=15)
        async with runtime.uow() as uow:
            rows = {r.name: r for r in (await uow.session.execute(
                select(MailboxStatus).where(MailboxStatus.name.in_([good, dead])))).scalars()}
        assert rows[good].up and rows[good].failures == 0
        assert "Connection refused" in (rows[dead].last_error or "")
    finally:
        await runtime.stop()


async def test_no_authentication_only_on_loopback(sqlite_url: str, tmp_path: Path) -> None:
    with EwsServer(anonymous=POST) as ews:
        ews.add_mailbox(POST)
        ews.deliver(POST, mail("Uden login (kun testserveren)"))
        local, remote = unique("ews-local"), unique("ews-remote")
        runtime = make_runtime(tmp_path, sqlite_url, [
            ews_config(ews, local, ews_auth="no authentication", username="",
                       password_env=None),
            ews_config(ews, remote, ews_auth="no authentication",
                       ews_url="https://mail.eksempelby.dk/EWS/Exchange.asmx")])
        await runtime.start()
        try:
            report = await ingest.poll_once(runtime)
            assert report.new == 1
            assert "only allowed for an http://127.0.0.1" in report.errors[remote]
            assert ews.operations() and all(who == POST for _op, who, _mb in ews.requests)
        finally:
            await runtime.stop()


async def test_oauth2_client_credentials_and_app_impersonation(
        ews: EwsServer, sqlite_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """OAuth 2.0 (client credentials at a local Entra-style token endpoint): exchangelib sends
    the bearer token, and the ExchangeImpersonation header and X-AnchorMailbox that Exchange
    demands of an app-only token; the app acts only with full_access_as_app."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the local servers speak http
    monkeypatch.setenv("PF_TEST_EWS_APP_SECRET", "app-secret")
    monkeypatch.setenv("PF_TEST_EWS_WRONG_SECRET", "not-the-secret")
    with GraphServer() as entra:
        entra.add_client("postfordeler-ews", "app-secret")
        ews.tokens = entra.tokens  # tokens the endpoint issued are valid at Exchange
        ews.deliver(BYG, mail("Med OAuth"))
        token_url = f"{entra.url}/tenant-1/oauth2/v2.0/token"

        def oauth(name: str, secret_env: str) -> dict[str, Any]:
            return ews_config(ews, name, BYG, ews_auth="OAuth 2.0", username="",
                              password_env=None, access_type="impersonation",
                              oauth2={"token_url": token_url, "client_id": "postfordeler-ews",
                                      "client_secret_env": secret_env})

        app, wrong = unique("ews-oauth"), unique("ews-oauth-wrong")
        runtime = make_runtime(tmp_path, sqlite_url, [oauth(app, "PF_TEST_EWS_APP_SECRET"),
                                                      oauth(wrong, "PF_TEST_EWS_WRONG_SECRET")])
        await runtime.start()
        try:
            report = await ingest.poll_once(runtime)
            assert "invalid_client" in report.errors[wrong]
            # a valid token, but the app has no full_access_as_app on the mailbox yet
            assert "ErrorImpersonateUserDenied" in report.errors[app]
            assert entra.token_requests >= 2

            ews.grant_app("postfordeler-ews")
            report = await ingest.poll_once(runtime)
            assert report.new == 1 and app not in report.errors
            assert [i.subject for i in await items_of(runtime, app)] == ["Med OAuth"]
            assert {(who, mb) for op, who, mb in ews.requests if op == "MoveItem"} == {
                ("app:postfordeler-ews", BYG)}
            assert all(b"<t:PrimarySmtpAddress>" + BYG.encode() in body
                       for body in ews.bodies)  # every request impersonates the mailbox
            assert set(ews.anchors) == {BYG}
        finally:
            await runtime.stop()

        # What Exchange answers an app-only token used without impersonation (why the adapter
        # refuses that configuration below): exchangelib directly, delegate access.
        creds = _oauth2_credentials(MailboxConfig.model_validate(
            oauth(app, "PF_TEST_EWS_APP_SECRET")), "test:direct")
        creds.identity = None
        account = Account(BYG, access_type=DELEGATE, autodiscover=False, config=Configuration(
            service_endpoint=ews.url, credentials=creds, auth_type=OAUTH2,
            version=Version(Build(15, 1, 2507, 6))))
        with pytest.raises(Exception, match="ExchangeImpersonation SOAP header must be present"):
            account.inbox.refresh()
        account.protocol.close()

    # An app-only token without impersonation is what Exchange refuses: refused up front.
    config = oauth(app, "PF_TEST_EWS_APP_SECRET")
    with pytest.raises(ConfigurationError, match="needs access_type: impersonation"):
        EwsMailbox(MailboxConfig.model_validate(config | {"access_type": "delegate"}))
    # Autodiscover is not offered: without ews_url the mailbox is refused with the reason.
    with pytest.raises(ConfigurationError, match="autodiscover is not supported"):
        EwsMailbox(MailboxConfig.model_validate(config | {"ews_url": None}))
