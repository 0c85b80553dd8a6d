"""Delivery: routed items go to their unit the way the unit works, and operations alerts.

- `delivery` (on `item.routed`, straight on the bus like the receipts: the Delivery row is its
  de-duplication and no transaction is held across SMTP): forwards the item to the unit's
  functional mailbox (`mailbox` in org.yaml). Units without one work in the clerk API only;
  every item is visible there in any case. Folder delivery (IMAP/EWS/Graph) is not built yet.
- the operations monitor (alerts.py): a periodic check that e-mails the operations address.
"""

from __future__ import annotations

from shared.contracts import ItemEvent, ItemRouted
from shared.errors import InvalidInput
from shared.mail import make_sender
from shared.runtime import Runtime

from .alerts import Monitor
from .deliver import Deliveries
from .forward import Forward, compose, delivery_message_id

__all__ = ["Deliveries", "Forward", "Monitor", "compose", "delivery_message_id", "start"]


async def start(runtime: Runtime) -> None:
    settings = runtime.settings
    from_address = settings.delivery_from or runtime.tenant.municipality.main_mailbox
    deliveries = Deliveries(runtime.uow, runtime.tenant, runtime.blobs,
                            make_sender(settings, "delivery"), from_address)

    async def on_routed(event: ItemEvent) -> None:
        if not isinstance(event, ItemRouted):
            raise InvalidInput(f"delivery got {type(event).__name__}")
        await deliveries.deliver(event)

    async def gave_up(event: ItemEvent, exc: BaseException) -> None:
        if isinstance(event, ItemRouted):
            await deliveries.failed(event, exc)

    await runtime.bus.subscribe("delivery", ("item.routed",), on_routed, gave_up)
    monitor = Monitor(runtime.uow, runtime.bus, make_sender(settings, "alerts"), settings,
                      from_address)
    runtime.spawn(runtime.run_periodic(settings.ops_check_interval, monitor.check,
                                       "operations-alerts"), "operations-alerts")
