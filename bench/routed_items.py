"""What the delivery benchmarks (access_delivery.py, delivery_folders.py) start from: items of
the unit "parkering" that the router has routed, and the line that says where they ran."""

from __future__ import annotations

import platform
import uuid

from shared.contracts import ItemRouted, ItemState, RouteOutcome
from shared.db import UnitOfWork
from shared.db.models import Item


def add_routed(uow: UnitOfWork, n: int, raw_sha256: str) -> list[ItemRouted]:
    """`n` done items with the raw message `raw_sha256`, added to `uow` (the caller commits),
    and the ItemRouted events that hand them to delivery."""
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
