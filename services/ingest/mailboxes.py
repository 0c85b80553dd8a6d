"""Mailbox adapters: where raw messages come from and where they go once stored.

A message is never deleted at the source: it is moved to the processed folder after its item
is committed, or to the failed folder when it is not a mail at all. A source ref names one
message in one mailbox and is the dedupe key, so it must not change while the message waits.
"""

from __future__ import annotations

import asyncio
import mailbox
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import structlog

from shared.errors import TransientError
from shared.imap import ImapConnection
from shared.tenant import MailboxConfig

if TYPE_CHECKING:
    from imapclient import IMAPClient

    from .syncstate import SyncStore

log = structlog.get_logger(__name__)


class Mailbox(Protocol):
    name: str

    async def list_new(self) -> list[str]:
        """Source refs of the messages waiting in the inbox folder, oldest first."""
        ...

    async def fetch(self, ref: str) -> bytes: ...

    async def mark_processed(self, ref: str) -> None: ...

    async def mark_failed(self, ref: str) -> None: ...

    async def wait(self, interval: float) -> None:
        """Return when new messages may have arrived: at once when the server tells (IMAP
        IDLE, within the mailbox's idle_timeout), else after `interval` seconds."""
        ...

    async def close(self) -> None: ...


def open_mailbox(config: MailboxConfig, data_dir: Path,
                 sync: SyncStore | None = None) -> Mailbox:
    """`sync` keeps incremental sync states (EWS, Graph) across restarts; without it they
    live as long as the adapter."""
    if config.kind == "maildir":
        return MaildirMailbox(config, data_dir)
    if config.kind == "graph":
        from .graph import GraphMailbox

        return GraphMailbox(config, sync=sync)
    if config.kind == "ews":
        from .ews import EwsMailbox

        return EwsMailbox(config, sync)
    return ImapMailbox(config)


class ImapMailbox:
    """IMAP through imapclient (blocking, so every call runs in a worker thread).

    Refs are "UIDVALIDITY:UID": if the server renumbers the folder, old refs no longer match
    and the Message-ID dedupe catches the re-listed messages. Login (password or OAuth2) and
    the worker thread are the connection's (shared/imap.py, shared with delivery); between
    polls the connection waits in IDLE when the server has it.
    """

    IDLE_SLICE = 1.0  # seconds per idle_check, so close() never waits long for an idle thread
    IDLE_MAX = 29 * 60.0  # RFC 2177: re-issue IDLE at least every 29 minutes

    def __init__(self, config: MailboxConfig) -> None:
        self.config = config
        self.name = config.name
        self._imap = ImapConnection(config, setup=self._setup)
        self._uidvalidity: int | None = None
        self._folders: dict[str, str] = {}
        self._closing = threading.Event()
        self._listed: set[int] = set()

    @property
    def _client(self) -> IMAPClient | None:
        return self._imap.client  # the open connection, if any

    def _setup(self, client: IMAPClient) -> None:
        """After login: the processed and failed folders exist, the inbox is selected."""
        cfg = self.config
        for folder in (cfg.processed_folder, cfg.failed_folder):
            name = folder.replace("/", self._imap.delimiter)
            if not client.folder_exists(name):
                client.create_folder(name)
                log.info("created mailbox folder", mailbox=self.name, folder=name)
            self._folders[folder] = name
        info = client.select_folder(cfg.folder)
        self._uidvalidity = int(info[b"UIDVALIDITY"])

    def _list(self) -> list[str]:
        client = self._imap.connect()
        info = client.select_folder(self.config.folder)  # refreshes the view of the folder
        self._uidvalidity = int(info[b"UIDVALIDITY"])
        uids = client.search(["NOT", "DELETED"])
        self._listed = set(uids)
        return [f"{self._uidvalidity}:{uid}" for uid in sorted(uids)]

    def _uid(self, ref: str) -> int:
        validity, _, uid = ref.partition(":")
        if int(validity) != self._uidvalidity:
            raise TransientError(f"mailbox {self.name}: UIDVALIDITY changed, re-list")
        return int(uid)

    def _fetch(self, ref: str) -> bytes:
        client = self._imap.connect()
        uid = self._uid(ref)
        data = client.fetch([uid], ["BODY.PEEK[]"])  # PEEK: do not set \Seen
        if uid not in data:
            raise TransientError(f"mailbox {self.name}: message {ref} vanished")
        return bytes(data[uid][b"BODY[]"])

    def _move(self, ref: str, folder: str) -> None:
        client = self._imap.connect()
        uid = self._uid(ref)
        target = self._folders[folder]
        if client.has_capability("MOVE"):
            client.move([uid], target)
            return
        client.copy([uid], target)
        client.add_flags([uid], [b"\\Deleted"])
        if client.has_capability("UIDPLUS"):
            client.uid_expunge([uid])
        else:
            client.expunge()

    async def list_new(self) -> list[str]:
        return list(await self._imap.call(self._list))

    async def fetch(self, ref: str) -> bytes:
        return bytes(await self._imap.call(self._fetch, ref))

    async def mark_processed(self, ref: str) -> None:
        await self._imap.call(self._move, ref, self.config.processed_folder)

    async def mark_failed(self, ref: str) -> None:
        await self._imap.call(self._move, ref, self.config.failed_folder)

    def _idle(self, timeout: float) -> bool:
        """IDLE until the server reports a change or `timeout`; False if it cannot IDLE."""
        client = self._imap.connect()
        if not (self.config.idle and client.has_capability("IDLE")):
            return False
        # A message that arrived while the last poll ran was announced in an answer to one
        # of its commands (imapclient drops such EXISTS), and IDLE would not announce it
        # again. A fresh SELECT resets the session's view; then look before waiting.
        client.select_folder(self.config.folder)
        if set(client.search(["NOT", "DELETED"])) - self._listed:
            return True
        from imapclient.exceptions import IMAPClientError

        try:
            client.idle()
        except IMAPClientError:
            # The server announced news (EXISTS) before its "+ idling": imapclient refuses
            # that answer. The IDLE command is running, so end it properly and poll.
            client.idle_done()
            return True
        try:
            deadline = time.monotonic() + min(timeout, self.IDLE_MAX)
            while not self._closing.is_set():
                left = deadline - time.monotonic()
                if left <= 0 or client.idle_check(timeout=min(self.IDLE_SLICE, left)):
                    break  # EXISTS, EXPUNGE, ... : something changed, poll now
        finally:
            client.idle_done()
        return True

    async def wait(self, interval: float) -> None:
        if not await self._imap.call(self._idle, self.config.idle_timeout):
            await asyncio.sleep(interval)

    async def close(self) -> None:
        self._closing.set()  # before waiting for the lock: an IDLE in progress ends soon
        await self._imap.close()


class MaildirMailbox:
    """A local Maildir (for the embedded mode and for scanners that drop .eml files).

    The ref is the Maildir key; processed/failed are Maildir++ subfolders, and a move is one
    atomic rename of the message file, so a message is never in neither place.
    """

    def __init__(self, config: MailboxConfig, data_dir: Path) -> None:
        if config.path is None:
            raise ValueError(f"mailbox {config.name}: a maildir mailbox needs a path")
        self.config = config
        self.name = config.name
        self.path = Path(data_dir) / config.path
        self._md: mailbox.Maildir | None = None

    def _open(self) -> mailbox.Maildir:
        if self._md is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._md = mailbox.Maildir(self.path, factory=None, create=True)
        return self._md

    def _folder_dir(self, folder: str) -> Path:
        md = self._open()
        name = folder.replace("/", ".")
        if name not in md.list_folders():
            md.add_folder(name)
        return self.path / f".{name}"

    def _list(self) -> list[str]:
        return sorted(self._open().keys())  # Maildir keys start with the delivery time

    def _file(self, ref: str) -> Path:
        for sub in ("new", "cur"):
            for entry in os.scandir(self.path / sub):
                if entry.name == ref or entry.name.startswith(ref + ":"):
                    return Path(entry.path)
        raise TransientError(f"mailbox {self.name}: message {ref} vanished")

    def _fetch(self, ref: str) -> bytes:
        return self._file(ref).read_bytes()

    def _move(self, ref: str, folder: str) -> None:
        source = self._file(ref)
        target = self._folder_dir(folder) / "cur" / source.name
        os.rename(source, target)

    async def list_new(self) -> list[str]:
        return await asyncio.to_thread(self._list)

    async def fetch(self, ref: str) -> bytes:
        return await asyncio.to_thread(self._fetch, ref)

    async def mark_processed(self, ref: str) -> None:
        await asyncio.to_thread(self._move, ref, self.config.processed_folder)

    async def mark_failed(self, ref: str) -> None:
        await asyncio.to_thread(self._move, ref, self.config.failed_folder)

    async def wait(self, interval: float) -> None:
        await asyncio.sleep(interval)

    async def close(self) -> None:
        self._md = None

