"""Delivery: routed items go to their unit the way the unit works, and operations alerts.

- `delivery` (on `item.routed`, straight on the bus like the receipts: the Delivery rows are its
  de-duplication and no transaction is held across SMTP or a mail server): forwards the item
  to the unit's functional mailbox (`mailbox` in org.yaml) and/or puts it into a folder of a
  mailbox (`delivery.folder`: IMAP, EWS or Graph, folders.py). Units with neither work in the
  clerk API only; every item is visible there in any case.
- the operations monitor (alerts.py): a periodic check that e-mails the operations address.
"""

from __future__ import annotations

import asyncio

from shared.contracts import ItemEvent, ItemRouted
from shared.errors import InvalidInput
from shared.mail import make_sender
from shared.runtime import Runtime

from .alerts import Monitor
from .deliver import Deliveries
from .folders import FolderWriter, open_writer
from .forward import Forward, compose, delivery_message_id, folder_message_id

__all__ = ["Deliveries", "FolderWriter", "Forward", "Monitor", "compose", "delivery_message_id",
           "folder_message_id", "open_writer", "start"]


async def start(runtime: Runtime) -> None:
    settings = runtime.settings
    from_address = settings.delivery_from or runtime.tenant.municipality.main_mailbox
    deliveries = Deliveries(runtime.uow, runtime.tenant, runtime.blobs,
                            make_sender(settings, "delivery"), from_address)
    deliveries.check()  # a unit's folder in an unknown mailbox stops the start

    async def close_writers() -> None:  # mailbox connections are closed when the runtime stops
        try:
            await asyncio.Event().wait()
        finally:
            await deliveries.close()

    async def on_routed(event: ItemEvent) -> None:
        if not isinstance(event, ItemRouted):
            raise InvalidInput(f"delivery got {type(event).__name__}")
        await deliveries.deliver(event)

    async def gave_up(event: ItemEvent, exc: BaseException) -> None:
        if isinstance(event, ItemRouted):
            await deliveries.failed(event, exc)

    await runtime.bus.subscribe("delivery", ("item.routed",), on_routed, gave_up)
    runtime.spawn(close_writers(), "delivery-writers")
    monitor = Monitor(runtime.uow, runtime.bus, make_sender(settings, "alerts"), settings,
                      from_address)
    runtime.spawn(runtime.run_periodic(settings.ops_check_interval, monitor.check,
                                       "operations-alerts"), "operations-alerts")
