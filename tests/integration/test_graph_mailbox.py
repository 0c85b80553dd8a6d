"""Exchange Online through Microsoft Graph, against the local Graph server
(tests/support/graph_server.py): client credentials, delta rounds over several pages, raw MIME,
move after store, throttling with Retry-After, an expired delta link."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from services import ingest
from services.ingest.graph import GraphMailbox
from shared.runtime import Runtime
from tests.integration.test_ingest_imap import NOT_A_MAIL, items_of, mail, make_runtime
from tests.support.graph_server import GraphServer

USER = "post@eksempelby.dk"


def graph_config(graph: GraphServer, name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "graph", "address": USER, "auth": "oauth2",
            "graph_url": f"{graph.url}/v1.0",
            "oauth2": {"token_url": f"{graph.url}/tenant-1/oauth2/v2.0/token",
                       "client_id": "postfordeler", "client_secret_env": "PF_TEST_GRAPH_SECRET"},
            **extra}


@pytest.fixture
def graph(monkeypatch: pytest.MonkeyPatch) -> Any:
    with GraphServer() as server:
        server.add_client("postfordeler", "graph-secret")
        server.add_user(USER)
        monkeypatch.setenv("PF_TEST_GRAPH_SECRET", "graph-secret")
        yield server


async def test_poll_pages_moves_and_fails(graph: GraphServer, db_url: str,
                                          tmp_path: Path) -> None:
    name = f"graph-{uuid.uuid4().hex[:8]}"
    for n in range(12):  # more than one delta page (10 a page)
        graph.deliver(USER, mail(f"Henvendelse {n}"))
    graph.deliver(USER, NOT_A_MAIL)
    runtime = make_runtime(tmp_path, db_url, [graph_config(graph, name)])
    await runtime.start()
    try:
        report = await ingest.poll_once(runtime)
        assert (report.new, report.failed, report.errors) == (12, 1, {})
        assert graph.folder_messages(USER, "inbox") == []
        assert len(graph.folder_messages(USER, "Postfordeler/Behandlet")) == 12
        assert graph.folder_messages(USER, "Postfordeler/Fejl") == [NOT_A_MAIL]
        items = await items_of(runtime, name)
        assert sorted(i.state for i in items).count("received") == 12
        assert all(i.channel == "email" and i.sender == "borger@example.dk"
                   for i in items if i.state == "received")
        assert graph.token_requests == 1  # the token is cached across requests
        pages = [p for m, p in graph.requests if p.endswith("/messages/delta")]
        assert len(pages) == 2

        again = await ingest.poll_once(runtime)
        assert (again.new, again.failed, again.errors) == (0, 0, {})
    finally:
        await runtime.stop()


async def test_incremental_rounds_and_throttling(graph: GraphServer, sqlite_url: str,
                                                 tmp_path: Path) -> None:
    name = f"graph-{uuid.uuid4().hex[:8]}"
    runtime = make_runtime(tmp_path, sqlite_url, [graph_config(graph, name)])
    adapter = GraphMailbox(runtime.tenant.mailboxes[0])
    try:
        first = graph.deliver(USER, mail("Første"))
        assert await adapter.list_new() == [first]
        # still waiting (not moved): a later incremental round keeps it
        second = graph.deliver(USER, mail("Anden"))
        graph.throttle(2, retry_after=1)
        assert await adapter.list_new() == [first, second]
        throttled = [p for m, p in graph.requests if p.endswith("/messages/delta")]
        assert len(throttled) == 4  # two 429s, then the round
        assert await adapter.fetch(second) == mail_bytes(graph, second)
        await adapter.mark_processed(first)
        assert await adapter.list_new() == [second]
        # someone deletes the waiting message in Outlook: the delta round reports @removed
        await adapter.mark_failed(second)
        assert await adapter.list_new() == []
        # an expired delta link (410) means a full round
        graph.pages.clear()
        link = adapter._cursor.state
        adapter._cursor.state = link.replace("deltatoken=", "deltatoken=x") if link else None
        third = graph.deliver(USER, mail("Tredje"))
        assert await adapter.list_new() == [third]
    finally:
        await adapter.close()


def mail_bytes(graph: GraphServer, ref: str) -> bytes:
    return graph.users[USER].messages[ref].mime


async def test_wrong_secret_reports_the_mailbox_down(graph: GraphServer, sqlite_url: str,
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"graph-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PF_TEST_GRAPH_SECRET", "wrong")
    runtime: Runtime = make_runtime(tmp_path, sqlite_url, [graph_config(graph, name)])
    await runtime.start()
    try:
        report = await ingest.poll_once(runtime)
        assert "invalid_client" in report.errors[name]
    finally:
        await runtime.stop()


async def test_delta_link_survives_a_restart(graph: GraphServer, sqlite_url: str,
                                             tmp_path: Path) -> None:
    """The delta link is saved in mailbox_sync once its messages are moved; a new adapter
    (a restarted process) resumes from it instead of a full round."""
    from services.ingest.syncstate import DbSyncStore
    from shared.db.models import MailboxSync

    name = f"graph-{uuid.uuid4().hex[:8]}"
    runtime = make_runtime(tmp_path, sqlite_url, [graph_config(graph, name)])
    await runtime.start()
    config = runtime.tenant.mailboxes[0]
    try:
        first = GraphMailbox(config, sync=DbSyncStore(runtime.uow))
        try:
            one = graph.deliver(USER, mail("Før genstart"))
            assert await first.list_new() == [one]
            await first.mark_processed(one)
        finally:
            await first.close()
        async with runtime.uow() as uow:
            row = await uow.session.get(MailboxSync, name)
            assert row is not None and row.state and "deltatoken=" in row.state
            saved = row.state
        two = graph.deliver(USER, mail("Efter genstart"))
        second = GraphMailbox(config, sync=DbSyncStore(runtime.uow))
        urls: list[str] = []
        request = second._request

        async def recording(method: str, url: str, **kwargs: Any) -> Any:
            urls.append(url)
            return await request(method, url, **kwargs)

        second._request = recording  # type: ignore[method-assign]
        try:
            assert await second.list_new() == [two]
            assert saved in urls  # resumed, not a full round
        finally:
            await second.close()
    finally:
        await runtime.stop()
