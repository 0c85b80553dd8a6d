"""A real SMTP server for tests (aiosmtpd in a thread) that records every message.

It can also write each message to a directory, and it can be told to refuse mail with a
temporary error (451) to play "SMTP is down". Given a TLS context and users, it offers
STARTTLS and AUTH PLAIN/LOGIN and requires both before it takes mail, as a submission server
does (RFC 3207, RFC 4954); each received message records whether it came over TLS and who
logged in. `self_signed_cert` makes a certificate for such a server.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.conftest import free_port


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    tls: bool = False  # came after STARTTLS
    login: str | None = None  # the user that logged in (AUTH), if any


def self_signed_cert(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """(certificate, key) PEM files of a self-signed certificate for `host` and localhost;
    the certificate is also the CA file a client must trust."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "postfordeler-test-smtp")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, _server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        login = session.auth_data if session.authenticated else None  # set by _authenticate
        return self.server._receive(envelope, tls=session.ssl is not None,
                                    login=str(login) if login else None)


class SmtpServer:
    def __init__(self, directory: Path | None = None, host: str = "127.0.0.1", *,
                 tls_context: ssl.SSLContext | None = None,
                 users: dict[str, str] | None = None) -> None:
        self.host = host
        self.port = free_port()  # aiosmtpd's Controller cannot take port 0
        self.directory = directory
        self.refuse_code: int | None = None
        self.users = dict(users or {})
        self.failed_logins = 0
        self._lock = threading.Lock()
        self._messages: list[Received] = []
        secure: dict[str, Any] = {}
        if tls_context is not None:
            secure.update(tls_context=tls_context, require_starttls=True)
        if users is not None:
            # Login only over TLS when TLS is offered, and no mail without login.
            secure.update(authenticator=self._authenticate, auth_required=True,
                          auth_require_tls=tls_context is not None)
        self._controller = Controller(_Handler(self), hostname=host, port=self.port, **secure)

    def _authenticate(self, _server: Any, _session: Any, _envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        if (mechanism in ("LOGIN", "PLAIN") and isinstance(auth_data, LoginPassword)
                and self.users.get(auth_data.login.decode()) == auth_data.password.decode()):
            return AuthResult(success=True, auth_data=auth_data.login.decode())
        with self._lock:
            self.failed_logins += 1
        return AuthResult(success=False, handled=False)

    def start(self) -> SmtpServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def refuse(self, code: int = 451) -> None:
        """Answer every message with `code` until `accept` is called."""
        self.refuse_code = code

    def accept(self) -> None:
        self.refuse_code = None

    def _receive(self, envelope: Any, *, tls: bool = False, login: str | None = None) -> str:
        if self.refuse_code is not None:
            return f"{self.refuse_code} Requested action aborted: try again later"
        raw = bytes(envelope.original_content or envelope.content)
        msg = Received(envelope.mail_from, tuple(envelope.rcpt_tos), raw, tls, login)
        with self._lock:
            self._messages.append(msg)
            n = len(self._messages)
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.directory / f".{n:06d}-{uuid.uuid4().hex}.tmp"
            tmp.write_bytes(raw)
            tmp.rename(self.directory / f"{n:06d}-{uuid.uuid4().hex}.eml")
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list[Received]:
        with self._lock:
            return list(self._messages)

    def raw_messages(self) -> list[bytes]:
        return [m.raw for m in self.messages]

    def count(self) -> int:
        with self._lock:
            return len(self._messages)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count() >= count:
                return self.messages
            time.sleep(0.02)
        raise AssertionError(f"{self.count()} message(s) received, expected {count}")


def count_dir(directory: Path) -> int:
    """Messages a server (perhaps in another process) wrote to `directory`."""
    return len(list(directory.glob("*.eml"))) if directory.exists() else 0


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[SmtpServer]:
    server = SmtpServer(directory=tmp_path / "smtp-received").start()
    try:
        yield server
    finally:
        server.stop()
