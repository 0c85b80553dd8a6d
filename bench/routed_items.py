"""What the delivery benchmarks (access_delivery.py, delivery_folders.py) start from: a migrated
database, items of the unit "parkering" that the router has routed, and the line that says
where they ran."""

from __future__ import annotations

import asyncio
import platform
import tempfile
import uuid
from pathlib import Path

from shared.blobs import BlobStore
from shared.contracts import ItemRouted, ItemState, RouteOutcome
from shared.db import UnitOfWork, migrate
from shared.db.models import Item


async def database(url: str | None) -> tuple[Path, str]:
    """A temporary directory, and `url` (a disposable database) or SQLite in it, migrated."""
    tmp = Path(tempfile.mkdtemp(prefix="pf-bench-"))
    url = url or f"sqlite+aiosqlite:///{tmp / 'pf.db'}"
    await asyncio.to_thread(migrate, url)
    return tmp, url


async def add_routed(uow: UnitOfWork, blobs: BlobStore, n: int, raw: bytes) -> list[ItemRouted]:
    """`n` done items with the raw message `raw`, added to `uow` (the caller commits), and the
    ItemRouted events that hand them to delivery."""
    raw_sha256 = (await blobs.put(raw, "message/rfc822")).sha256
    events = []
    for i in range(n):
        item = Item(id=uuid.uuid4(), correlation_id=uuid.uuid4(), channel="email",
                    mailbox="post", source_ref=f"bench-{i}", subject="Parkering",
                    sender="a@example.dk", state=ItemState.DONE.value, unit="parkering",
                    raw_sha256=raw_sha256)
        uow.session.add(item)
        events.append(ItemRouted(correlation_id=item.correlation_id, producer="router",
                                 item_id=item.id, outcome=RouteOutcome.ROUTED, unit="parkering",
                                 reasons=("bench",)))
    return events


def machine(database_url: str) -> str:
    return (f"machine: {platform.processor() or platform.machine()}, "
            f"Python {platform.python_version()}, database {database_url.split(':')[0]}")
