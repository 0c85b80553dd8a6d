"""Receipts: who gets one, and what it looks like (no SMTP)."""

from __future__ import annotations

import email
import email.policy
import uuid
from pathlib import Path

import pytest

from services.journal.archive import next_serial
from services.journal.receipt_text import (
    ReceiptContent,
    ReceiptTemplates,
    compose,
    form_id_of,
    is_auto_reply,
    receipt_due,
    receipt_message_id,
    reference,
)
from services.journal.receipts import RetryPolicy
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


def _content(**kw: object) -> ReceiptContent:
    base: dict[str, object] = dict(item_id=uuid.uuid4(), to="a@b.dk", subject="Storskrald",
                                   municipality="Demoby Kommune", domain="demoby.dk",
                                   from_address="post@demoby.dk", unit_name="Affald og Genbrug",
                                   unit_id="affald")
    return ReceiptContent(**{**base, **kw})  # type: ignore[arg-type]


def _bodies(msg) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    return (msg.get_body(("plain",)).get_content(), msg.get_body(("html",)).get_content())


def test_tenant_templates_per_form_and_unit_and_answer_times(tmp_path: Path) -> None:
    (tmp_path / "receipts" / "form").mkdir(parents=True)
    (tmp_path / "receipts" / "unit").mkdir(parents=True)
    (tmp_path / "receipts.yaml").write_text(
        "default: {next_steps: Vi læser din henvendelse., answer_time: inden for 10 arbejdsdage}\n"
        "units: {affald: {answer_time: inden for 5 arbejdsdage}}\n"
        "forms: {bestil-storskrald: {next_steps: Vi henter dit storskrald på din tømmedag.}}\n",
        encoding="utf-8")
    (tmp_path / "receipts" / "form" / "bestil-storskrald.txt.j2").write_text(
        '{% extends "receipt.txt.j2" %}{% block greeting %}Kære borger{% endblock %}',
        encoding="utf-8")
    (tmp_path / "receipts" / "unit" / "affald.html.j2").write_text(
        "<p>Affald: {{ reference }} {{ answer_time }}</p>", encoding="utf-8")
    templates = ReceiptTemplates(tmp_path)

    form = compose(_content(form_id="bestil-storskrald"), templates)
    plain, html = _bodies(form)
    assert plain.startswith("Kære borger")  # the form's own text template
    assert "Hvad sker der nu? Vi henter dit storskrald på din tømmedag." in plain
    assert "Du kan forvente svar inden for 5 arbejdsdage." in plain  # the unit's answer time
    assert html.startswith("<p>Affald: PF-")  # no form HTML template: the unit's

    other = compose(_content(unit_id="parkering", unit_name="Parkering"), templates)
    plain, html = _bodies(other)
    assert plain.startswith("Kære afsender")  # built-in default
    assert "Vi læser din henvendelse." in plain and "inden for 10 arbejdsdage" in html


def test_builtin_receipt_says_what_happens_next_only_when_known() -> None:
    plain, _ = _bodies(compose(_content()))
    assert "Hvad sker der nu?" not in plain and "forvente svar" not in plain
    plain, html = _bodies(compose(_content(next_steps="Vi ringer.", answer_time="i morgen")))
    assert "Hvad sker der nu? Vi ringer." in plain and "Du kan forvente svar i morgen." in html


def test_form_id_from_entity_or_form_channel() -> None:
    assert form_id_of("email", "post", [{"kind": "form", "value": "x"}]) == "x"
    assert form_id_of("form", "form:bestil-storskrald", []) == "bestil-storskrald"
    assert form_id_of("email", "post", None) is None


def test_receipt_retry_back_off_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(base=30, max_delay=600, max_attempts=5)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5, 6)] == [30, 60, 120, 240, 480, 600]


def test_a_form_is_filed_as_its_json_document() -> None:
    import uuid

    from services.journal.filing import files_of

    item_id = uuid.uuid4()
    (doc,) = files_of(item_id, b'{"fields": {"adresse": "Skovvej 3"}}', "form")
    assert doc.name.endswith(".json") and doc.content_type == "application/json"
