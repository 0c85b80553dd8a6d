"""The Graph create-message body of a folder copy (pure): decision headers as
internetMessageHeaders (x- names only, as Graph demands), not a draft, the copy's Message-ID in
the extended property the look-up filters on, the original attached when it fits the request,
a sensitive item as the notice only."""

from __future__ import annotations

import base64
import uuid

from services.delivery.forward import Forward, folder_message_id
from services.delivery.graph_folder import (
    DELIVERY_PROPERTY,
    MAX_INLINE_ATTACHMENT,
    MESSAGE_FLAGS,
    graph_message,
)

RAW = b"From: borger@example.dk\r\nSubject: Afgift\r\nMessage-ID: <o@example.dk>\r\n\r\nHej\r\n"


def copy(original: bytes | None = RAW, sensitive: bool = False) -> Forward:
    event = uuid.uuid4()
    return Forward(event_id=event, item_id=uuid.uuid4(), domain="demoby.dk", from_name="Demoby",
                   from_address="post@demoby.dk", to="parkering@demoby.dk", unit_id="parkering",
                   unit_name="Parkering", subject="Afgift AB12345", sender="borger@example.dk",
                   clerk="ALA", case_number="05.09.04-G01-1-26", reasons=("regel: plade",),
                   rerouted=False, channel="email", original=original,
                   original_name="item.eml", sensitive=sensitive,
                   message_id=folder_message_id(event, "demoby.dk"))


def test_message_with_headers_flags_and_the_original() -> None:
    f = copy()
    body = graph_message(f)
    assert body["subject"] == "[Postfordeler] Afgift AB12345"
    headers = {h["name"]: h["value"] for h in body["internetMessageHeaders"]}
    assert all(name.lower().startswith("x-") for name in headers)
    assert headers["X-Postfordeler-Case"] == "05.09.04-G01-1-26"
    props = {p["id"]: p["value"] for p in body["singleValueExtendedProperties"]}
    assert props == {MESSAGE_FLAGS: "0", DELIVERY_PROPERTY: f.msgid}
    [attachment] = body["attachments"]
    assert attachment["@odata.type"] == "#microsoft.graph.fileAttachment"
    assert attachment["contentType"] == "message/rfc822"
    assert base64.b64decode(attachment["contentBytes"]) == RAW
    assert "vedhæftet" in body["body"]["content"]
    assert body["replyTo"] == [{"emailAddress": {"address": "borger@example.dk"}}]


def test_an_original_too_large_for_the_request_is_left_in_postfordeler() -> None:
    body = graph_message(copy(original=b"x" * (MAX_INLINE_ATTACHMENT + 1)))
    assert "attachments" not in body
    assert "kan ses i Postfordeler" in body["body"]["content"]


def test_a_sensitive_item_is_only_the_notice() -> None:
    body = graph_message(copy(sensitive=True))
    assert "attachments" not in body and "replyTo" not in body
    text = str(body)
    for secret in ("Afgift", "AB12345", "plade", "borger@example.dk"):
        assert secret not in text, secret
    headers = {h["name"]: h["value"] for h in body["internetMessageHeaders"]}
    assert headers["X-Postfordeler-Sensitive"] == "yes"
