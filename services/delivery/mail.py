"""Sending mail (forwards and alerts): SMTP when a host is configured, else a pickup
directory of .eml files. Errors are classified for the bus: a refused recipient is permanent,
anything else transient."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import aiosmtplib

from shared.errors import PermanentError, TransientError
from shared.files import write_atomic
from shared.settings import Settings


class MailSender(Protocol):
    async def send(self, msg: EmailMessage, name: str) -> None: ...


class SmtpSender:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, msg: EmailMessage, name: str) -> None:
        s = self.settings
        try:
            await aiosmtplib.send(
                msg, hostname=s.smtp_host, port=s.smtp_port, username=s.smtp_username,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                start_tls=s.smtp_starttls, timeout=s.smtp_timeout)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            if all(r.code >= 500 for r in exc.recipients):
                raise PermanentError(f"SMTP refused the recipient ({exc.recipients[0].code})") \
                    from exc
            raise TransientError(f"SMTP refused the recipient: {exc}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TransientError(f"SMTP {s.smtp_host}:{s.smtp_port}: {exc}") from exc


class PickupDirSender:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    async def send(self, msg: EmailMessage, name: str) -> None:
        await asyncio.to_thread(write_atomic, self.directory / f"{name}.eml", msg.as_bytes())


def make_sender(settings: Settings, pickup: str) -> MailSender:
    if settings.smtp_host:
        return SmtpSender(settings)
    return PickupDirSender(settings.outbox_path / pickup)
