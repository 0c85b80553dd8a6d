"""Loop protection: which messages must never be answered."""

from __future__ import annotations

import uuid

import pytest

from services.ingest.loops import LoopKind, detect

DOMAINS = ("eksempelby.dk",)


def msg(*headers: str, body: str = "Hej") -> bytes:
    base = ["From: Borger <borger@example.dk>", "To: post@eksempelby.dk", "Subject: Hej",
            f"Message-ID: <{uuid.uuid4()}@example.dk>"]
    names = {h.split(":")[0].lower() for h in headers}
    lines = [h for h in base if h.split(":")[0].lower() not in names] + list(headers)
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()


@pytest.mark.parametrize(("headers", "kind"), [
    ((f"Message-ID: <receipt-{uuid.uuid4()}@eksempelby.dk>",), LoopKind.OWN_MESSAGE),
    ((f"Message-ID: <forward-{uuid.uuid4()}@EKSEMPELBY.DK>",), LoopKind.OWN_MESSAGE),
    ((f"X-Postfordeler-Item: {uuid.uuid4()}",), LoopKind.OWN_MESSAGE),
    (("Content-Type: multipart/report; report-type=delivery-status; boundary=x",),
     LoopKind.DELIVERY_REPORT),
    (("Content-Type: multipart/report; report-type=disposition-notification; boundary=x",),
     LoopKind.DELIVERY_REPORT),
    (("Return-Path: <>",), LoopKind.DELIVERY_REPORT),
    (("From: Mail Delivery System <MAILER-DAEMON@mx.example.dk>",), LoopKind.DELIVERY_REPORT),
    (("From: postmaster@example.dk",), LoopKind.DELIVERY_REPORT),
    (("Auto-Submitted: auto-replied",), LoopKind.AUTO_REPLY),
    (("Auto-Submitted: auto-generated; owner-email=x@example.dk",), LoopKind.AUTO_REPLY),
    (("Precedence: auto_reply",), LoopKind.AUTO_REPLY),
    (("Precedence: junk",), LoopKind.AUTO_REPLY),
    (("Precedence: bulk",), LoopKind.AUTO_REPLY),
    (("X-Auto-Response-Suppress: All",), LoopKind.AUTO_REPLY),
    (("X-Autoreply: yes",), LoopKind.AUTO_REPLY),
    (("X-Autorespond: Jeg er på ferie",), LoopKind.AUTO_REPLY),
])
def test_recognised(headers: tuple[str, ...], kind: LoopKind) -> None:
    loop = detect(msg(*headers), DOMAINS)
    assert loop is not None and loop.kind is kind and loop.reason


@pytest.mark.parametrize("headers", [
    (),
    ("Auto-Submitted: no",),
    ("Precedence: list", "List-Id: <nyheder.example.dk>"),  # a newsletter: for the rules
    ("X-Autoreply: no",),
    # a receipt-shaped Message-ID from someone else's domain is not ours
    (f"Message-ID: <receipt-{uuid.uuid4()}@andenkommune.dk>",),
    # a person answering our receipt writes a new message
    (f"In-Reply-To: <receipt-{uuid.uuid4()}@eksempelby.dk>", "Subject: Sv: Kvittering"),
    ("Return-Path: <borger@example.dk>",),
])
def test_not_a_loop(headers: tuple[str, ...]) -> None:
    assert detect(msg(*headers), DOMAINS) is None


def test_receipts_we_compose_are_recognised() -> None:
    """The journal's own receipt, as it would come back to a mailbox we read."""
    from services.journal.receipts import ReceiptContent, compose

    item = uuid.uuid4()
    receipt = compose(ReceiptContent(item_id=item, to="borger@example.dk", subject="Hej",
                                     municipality="Eksempelby Kommune", domain="eksempelby.dk",
                                     from_address="post@eksempelby.dk"))
    loop = detect(receipt.as_bytes(), DOMAINS)
    assert loop is not None and loop.kind is LoopKind.OWN_MESSAGE


def test_only_headers_are_read() -> None:
    """A huge or broken body does not matter: only the header section is parsed."""
    raw = msg("Auto-Submitted: auto-replied", body="\x00\xff" * 100_000)
    loop = detect(raw, DOMAINS)
    assert loop is not None and loop.kind is LoopKind.AUTO_REPLY
