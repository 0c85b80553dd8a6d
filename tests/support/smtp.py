"""A real SMTP server for tests (aiosmtpd in a thread) that records every message.

It can also write each message to a directory, and it can be told to refuse mail with a
temporary error (451) to play "SMTP is down".
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import free_port


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        return self.server._receive(envelope)


class SmtpServer:
    def __init__(self, directory: Path | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port()  # aiosmtpd's Controller cannot take port 0
        self.directory = directory
        self.refuse_code: int | None = None
        self._lock = threading.Lock()
        self._messages: list[Received] = []
        self._controller = Controller(_Handler(self), hostname=host, port=self.port)

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

    def _receive(self, envelope: Any) -> str:
        if self.refuse_code is not None:
            return f"{self.refuse_code} Requested action aborted: try again later"
        raw = bytes(envelope.original_content or envelope.content)
        msg = Received(envelope.mail_from, tuple(envelope.rcpt_tos), raw)
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
