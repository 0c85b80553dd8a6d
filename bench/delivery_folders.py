"""Folder delivery benchmark: N routed items put into a unit's mailbox folder by the delivery
consumer on the in-process bus, through IMAP to a local dovecot, or through EWS or Graph to the
local test servers (tests/support; they measure Postfordeler's side, not Exchange's).

    python bench/delivery_folders.py --channel imap --n 300 [--db postgresql+asyncpg://...]

Reports copies/s: per item the look-up for an earlier copy, the store, and both bookkeeping
transactions. SQLite in a temporary directory unless --db names a (disposable) database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from routed_items import add_routed, database, machine  # noqa: E402  (beside this file)

from services.delivery import start as start_delivery  # noqa: E402
from shared.db.models import Delivery  # noqa: E402
from shared.runtime import Runtime  # noqa: E402
from shared.settings import Settings  # noqa: E402
from tests.support import folder_targets as t  # noqa: E402
from tests.support.dovecot import DovecotServer  # noqa: E402
from tests.support.ews_server import EwsServer  # noqa: E402
from tests.support.graph_server import GraphServer  # noqa: E402

RAW = b"From: a@example.dk\r\nSubject: Parkering\r\nMessage-ID: <b@example.dk>\r\n\r\nHej\r\n"


@contextlib.contextmanager
def server(channel: str, tmp: Path) -> Iterator[tuple[dict[str, Any], Callable[[], int]]]:
    """The mailbox configuration and a counter of the copies in the folder."""
    if channel == "imap":
        os.environ["PF_TEST_IMAP_PASSWORD"] = "imap-secret"
        with DovecotServer(tmp / "dovecot", separator=".") as imap:
            imap.add_user("parkering", "imap-secret")
            yield t.imap_box(imap), lambda: imap.count("parkering", "Postfordeler.Parkering")
    elif channel == "ews":
        os.environ["PF_TEST_EWS_PASSWORD"] = "ews-secret"
        with EwsServer() as ews:
            ews.add_user(t.SVC, "ews-secret", t.SVC_ADDRESS)
            ews.add_mailbox(t.SHARED)
            ews.grant_delegate(t.SHARED, t.SVC_ADDRESS)
            yield t.ews_box(ews), lambda: len(ews.folder_items(t.SHARED, t.FOLDER))
    else:
        os.environ["PF_TEST_GRAPH_SECRET"] = "graph-secret"
        with GraphServer() as graph:
            graph.add_client("postfordeler", "graph-secret")
            graph.add_user(t.SHARED)
            yield t.graph_box(graph), lambda: len(graph.messages_in(t.SHARED, t.FOLDER))


async def main(channel: str, n: int, db: str | None) -> None:
    tmp, url = await database(db)
    with server(channel, tmp) as (mailbox, count):
        settings = Settings(data_dir=tmp / "data", database_url=url, amqp_url="memory://",
                            tenant_dir=t.tenant_with(tmp / "tenant", mailbox),
                            ops_check_interval=3600)
        runtime = Runtime(settings)
        await runtime.start()
        try:
            async with runtime.uow() as uow:
                events = await add_routed(uow, runtime.blobs, n, RAW)
                await uow.commit()
            await start_delivery(runtime)
            started = time.perf_counter()
            for event in events:
                await runtime.bus.publish(event)
            sent = 0
            while sent < n:
                await asyncio.sleep(0.05)
                async with runtime.uow() as uow:
                    sent = (await uow.session.execute(select(func.count()).select_from(
                        Delivery).where(Delivery.status == "sent"))).scalar_one()
            took = time.perf_counter() - started
            print(machine(url))
            print(f"{channel} folder copies: {n} in {took:.2f} s = {n / took:.0f}/s "
                  f"({sent} delivery rows sent, {count()} in the folder)")
        finally:
            await runtime.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--channel", choices=("imap", "ews", "graph"), default="imap")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--db", default=None)
    args = parser.parse_args()
    asyncio.run(main(args.channel, args.n, args.db))
