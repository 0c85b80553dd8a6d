"""Receipts through an SMTP submission server that requires STARTTLS and login, with a
certificate made here and trusted through `smtp_ca_file`: the receipt arrives once, over TLS,
authenticated; a client that does not trust the certificate, or has the wrong password, sends
nothing and the receipt waits."""

from __future__ import annotations

import email
import email.policy
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiosmtplib
import pytest
from pydantic import SecretStr

from services.journal import Receipts, make_sender
from shared.contracts import ItemRouted, JournalAction, RouteOutcome
from shared.db.models import Item, Receipt
from shared.errors import TransientError
from shared.mail import SmtpSender
from shared.runtime import Runtime
from shared.settings import DEMO_TENANT_DIR, Settings
from tests.support.smtp import SmtpServer, self_signed_cert

USER, PASSWORD = "postfordeler", "hemmeligt-kodeord"


@pytest.fixture
def certs(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path / "tls")


@pytest.fixture
def tls_smtp(certs: tuple[Path, Path]) -> Iterator[SmtpServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certs)
    server = SmtpServer(tls_context=context, users={USER: PASSWORD}).start()
    try:
        yield server
    finally:
        server.stop()


def _settings(tmp_path: Path, db_url: str, server: SmtpServer, ca_file: Path | None,
              password: str = PASSWORD) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=db_url,  # type: ignore[arg-type]
                    amqp_url="memory://", tenant_dir=DEMO_TENANT_DIR,  # type: ignore[arg-type]
                    smtp_host=server.host, smtp_port=server.port, smtp_starttls=True,
                    smtp_username=USER, smtp_password=SecretStr(password),
                    smtp_ca_file=ca_file, smtp_timeout=5.0)


async def _routed_item(rt: Runtime) -> ItemRouted:
    item_id = uuid.uuid4()
    async with rt.uow() as uow:
        uow.session.add(Item(
            id=item_id, correlation_id=uuid.uuid4(), channel="email", mailbox="post",
            source_ref=f"test-{item_id}", message_id=f"<{item_id}@mail.example.dk>",
            raw_sha256="ab" * 32, subject="Klage", sender="borger@example.dk", state="done"))
        await uow.commit()
    return ItemRouted(correlation_id=uuid.uuid4(), producer="router", item_id=item_id,
                      outcome=RouteOutcome.ROUTED, unit="parkering", clerk="ALA",
                      journal=JournalAction.NEW_CASE, kle="05.09.04", receipt=True)


async def test_receipt_over_starttls_with_login_arrives_once(
        db_url: str, tmp_path: Path, tls_smtp: SmtpServer, certs: tuple[Path, Path]) -> None:
    settings = _settings(tmp_path, db_url, tls_smtp, ca_file=certs[0])
    rt = Runtime(settings)
    await rt.start()
    try:
        sender = make_sender(settings)
        assert isinstance(sender, SmtpSender)
        receipts = Receipts(rt.uow, rt.tenant, sender)
        event = await _routed_item(rt)
        assert await receipts.deliver(event)
        assert not await receipts.deliver(event)  # redelivered: not sent twice
        [received] = tls_smtp.wait_for(1)
        assert received.tls and received.login == USER
        assert received.rcpt_tos == ("borger@example.dk",)
        msg = email.message_from_bytes(received.raw, policy=email.policy.default)
        assert msg["Message-ID"] == f"<receipt-{event.item_id}@demoby.dk>"
        assert tls_smtp.count() == 1 and tls_smtp.failed_logins == 0
        async with rt.uow() as uow:
            receipt = await uow.session.get(Receipt, event.item_id)
            assert receipt is not None and receipt.status == "sent"
    finally:
        await rt.stop()


@pytest.mark.parametrize("case", ["untrusted certificate", "wrong password"])
async def test_untrusted_server_or_bad_login_sends_nothing(
        tmp_path: Path, tls_smtp: SmtpServer, certs: tuple[Path, Path], case: str) -> None:
    settings = _settings(tmp_path, "sqlite+aiosqlite:///:memory:", tls_smtp,
                         ca_file=None if case == "untrusted certificate" else certs[0],
                         password="forkert" if case == "wrong password" else PASSWORD)
    msg = email.message.EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "post@demoby.dk", "borger@example.dk", "Kvittering"
    msg.set_content("Tak for din henvendelse.")
    with pytest.raises(TransientError):  # the receipt waits and is retried, not lost
        await SmtpSender(settings).send(msg, uuid.uuid4())
    assert tls_smtp.count() == 0
    # aiosmtplib tries each mechanism the server offers (PLAIN, LOGIN) before giving up
    assert (tls_smtp.failed_logins > 0) == (case == "wrong password")


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_server_requires_starttls_and_login(tls_smtp: SmtpServer,
                                                  certs: tuple[Path, Path],
                                                  mechanism: str) -> None:
    """The test server behaves as a submission server: no login before STARTTLS, no mail
    without login, and both AUTH PLAIN and AUTH LOGIN work."""
    client = aiosmtplib.SMTP(hostname=tls_smtp.host, port=tls_smtp.port, start_tls=False,
                             tls_context=ssl.create_default_context(cafile=str(certs[0])))
    async with client:
        with pytest.raises(aiosmtplib.SMTPException):
            await client.sendmail("post@demoby.dk", ["borger@example.dk"], b"Subject: x\r\n\r\nx")
        await client.starttls()
        with pytest.raises(aiosmtplib.SMTPResponseException):
            await client.sendmail("post@demoby.dk", ["borger@example.dk"], b"Subject: x\r\n\r\nx")
        login = client.auth_plain if mechanism == "PLAIN" else client.auth_login
        await login(USER, PASSWORD)
        await client.sendmail("post@demoby.dk", ["borger@example.dk"], b"Subject: x\r\n\r\nx")
    [received] = tls_smtp.wait_for(1)
    assert received.tls and received.login == USER
