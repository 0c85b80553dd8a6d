"""Receipts: who gets one, and what it looks like (no SMTP)."""

from __future__ import annotations

import email
import email.policy
import uuid

import pytest

from services.journal.archive import next_serial
from services.journal.receipts import (
    ReceiptContent,
    compose,
    is_auto_reply,
    receipt_due,
    receipt_message_id,
    reference,
)
from shared.contracts import ItemRouted, JournalAction, RouteOutcome


def _routed(outcome: RouteOutcome = RouteOutcome.ROUTED, receipt: bool = True) -> ItemRouted:
    return ItemRouted(correlation_id=uuid.uuid4(), producer="router", item_id=uuid.uuid4(),
                      outcome=outcome, unit="parkering", journal=JournalAction.NEW_CASE,
                      receipt=receipt)


def test_receipt_goes_to_human_senders_of_kept_items() -> None:
    assert receipt_due(_routed(), "borger@example.dk")
    assert receipt_due(_routed(RouteOutcome.TRIAGE), "Borger@Example.dk ")
    assert not receipt_due(_routed(receipt=False), "borger@example.dk")
    assert not receipt_due(_routed(RouteOutcome.NOT_RELEVANT), "borger@example.dk")
    assert not receipt_due(_routed(), "borger@example.dk", auto_reply=True)


@pytest.mark.parametrize("sender", ["", None, "not an address", "noreply@example.dk",
                                    "no-reply@example.dk", "NO_REPLY@x.dk".replace("_", "-"),
                                    "donotreply@x.dk", "do-not-reply@x.dk",
                                    "MAILER-DAEMON@mx.example.dk", "postmaster@x.dk",
                                    "noreply+abc@x.dk", "bounces@lists.example.dk"])
def test_no_receipt_to_robots_or_missing_addresses(sender: str | None) -> None:
    assert not receipt_due(_routed(), sender)


def test_auto_reply_entity_is_recognised() -> None:
    assert is_auto_reply([{"kind": "keyword", "value": "x"}, {"kind": "auto_reply"}])
    assert not is_auto_reply(None)
    assert not is_auto_reply([{"kind": "keyword", "value": "auto_reply"}])


def test_receipt_message_is_danish_multipart_and_marked_automatic() -> None:
    item = uuid.uuid4()
    msg = compose(ReceiptContent(
        item_id=item, to="borger@example.dk", subject="Klage over parkeringsafgift",
        municipality="Demoby Kommune", domain="demoby.dk", from_address="post@demoby.dk",
        unit_name="Parkering & Trafik", in_reply_to="abc@mail.example.dk"))
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert parsed["Message-ID"] == receipt_message_id(item, "demoby.dk") \
        == f"<receipt-{item}@demoby.dk>"
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert parsed["In-Reply-To"] == "<abc@mail.example.dk>"
    assert parsed["To"] == "borger@example.dk"
    assert parsed["X-Postfordeler-Item"] == str(item)
    assert parsed.get_content_type() == "multipart/alternative"
    plain = parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Tak for din henvendelse til Demoby Kommune" in plain
    assert reference(item) in plain and reference(item) in html
    assert "Parkering & Trafik" in plain and "Parkering &amp; Trafik" in html


def test_receipt_without_unit_or_subject() -> None:
    msg = compose(ReceiptContent(item_id=uuid.uuid4(), to="a@b.dk", subject="",
                                 municipality="Demoby Kommune", domain="demoby.dk",
                                 from_address="post@demoby.dk"))
    assert msg["Subject"] == "Kvittering for modtagelse"
    assert "fordelt til den rette afdeling" in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_case_serials_continue_after_the_highest() -> None:
    numbers = ["05.09.04-G01-3-26", "05.09.04-G01-12-26", "05.09.04-G01-99-25",
               "05.09.04-G01-x-26"]
    assert next_serial(numbers, "05.09.04-G01-", "-26") == 13
    assert next_serial([], "00.00.00-G01-", "-26") == 1
