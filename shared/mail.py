"""Sending mail (receipts, forwards to units, alerts): SMTP when a host is configured, else a
pickup directory of .eml files. Errors are classified for the bus: a recipient refused with a
5xx is permanent, anything else (server down, 4xx, failed login) transient."""

from __future__ import annotations

import asyncio
import ssl
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import aiosmtplib

from shared.errors import PermanentError, TransientError
from shared.files import write_atomic
from shared.settings import Settings


class MailSender(Protocol):
    async def send(self, msg: EmailMessage, name: str) -> None:
        """Send `msg`; `name` names its file where mail is written to a directory."""


class SmtpSender:
    """SMTP with STARTTLS and login when configured (aiosmtplib)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # The certificate is always verified; smtp_ca_file names the CA of a municipality's
        # internal relay, which the system's trust store does not know.
        self.tls_context = ssl.create_default_context(
            cafile=str(settings.smtp_ca_file) if settings.smtp_ca_file else None)

    async def send(self, msg: EmailMessage, name: str) -> None:
        s = self.settings
        try:
            await aiosmtplib.send(
                msg, hostname=s.smtp_host, port=s.smtp_port, username=s.smtp_username,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                start_tls=s.smtp_starttls, tls_context=self.tls_context,
                timeout=s.smtp_timeout)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            if all(r.code >= 500 for r in exc.recipients):
                raise PermanentError(f"SMTP refused the recipient ({exc.recipients[0].code})") \
                    from exc
            raise TransientError(f"SMTP refused the recipient: {exc}") from exc
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise TransientError(f"SMTP login failed ({exc.code})") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TransientError(f"SMTP {s.smtp_host}:{s.smtp_port}: {exc}") from exc


class PickupDirSender:
    """No SMTP server configured: write `<name>.eml` into a pickup directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    async def send(self, msg: EmailMessage, name: str) -> None:
        await asyncio.to_thread(write_atomic, self.directory / f"{name}.eml", msg.as_bytes())


def make_sender(settings: Settings, pickup: str = "") -> MailSender:
    """SMTP, or the pickup directory `outbox_path/pickup` when no SMTP host is set."""
    if settings.smtp_host:
        return SmtpSender(settings)
    return PickupDirSender(settings.outbox_path / pickup if pickup else settings.outbox_path)
