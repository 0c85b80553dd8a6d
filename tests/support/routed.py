"""The routed demo item the delivery tests hand out (a parking letter routed to `parkering`
with clerk and case), its stored original, and the decision headers every copy carries."""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage

from shared.blobs import FileBlobStore
from shared.contracts import ItemRouted, ItemState, RouteOutcome
from tests.support.app import Api

RAW = (b"From: Borger <borger@example.dk>\r\nTo: post@demoby.dk\r\n"
       b"Subject: Parkeringsafgift AB12345\r\nMessage-ID: <orig-1@example.dk>\r\n\r\n"
       b"Jeg har faaet en afgift.\r\n")


async def routed_item(api: Api, unit: str = "parkering", sensitive: bool = False) -> ItemRouted:
    raw = await FileBlobStore(api.settings.blobs_path).put(RAW, "message/rfc822")
    item_id = await api.item(unit, ItemState.DONE, subject="Parkeringsafgift AB12345",
                             raw_sha256=raw.sha256)
    async with api.uow() as uow:
        correlation = (await uow.item(item_id)).correlation_id
    extra = {"sensitive": True} if sensitive else {}
    return ItemRouted(correlation_id=correlation, producer="router", item_id=item_id,
                      outcome=RouteOutcome.ROUTED, unit=unit, clerk="ALA",
                      case_number="05.09.04-G01-1-26",
                      reasons=("parkering: rule 'Nummerplade' matched plate AB12345",),
                      **extra)


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def assert_decision_headers(msg: EmailMessage, event: ItemRouted) -> None:
    """The routing decision of `routed_item`'s event, as a forward and a folder copy carry it."""
    assert msg["X-Postfordeler-Item"] == str(event.item_id)
    assert msg["X-Postfordeler-Unit"] == "parkering"
    assert msg["X-Postfordeler-Decision"] == "routed"
    assert msg["X-Postfordeler-Clerk"] == "ALA"
    assert msg["X-Postfordeler-Case"] == "05.09.04-G01-1-26"
    assert "Nummerplade" in msg["X-Postfordeler-Reason"]
