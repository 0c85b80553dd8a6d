"""Putting an item into a folder of a unit's mailbox (org.yaml `delivery.folder`): IMAP APPEND
here, EWS CreateItem (ews_folder.py) and Graph create-message (graph_folder.py).

Every writer first looks in the folder for the copy's Message-ID (Graph: an extended property
that carries it) and stores nothing when it is there, so a delivery repeated after a crash
between storing and recording "sent" leaves one copy, not two. The copy arrives unread and is
not a draft. Connections are kept per mailbox and reopened after an error.
"""

from __future__ import annotations

import asyncio
import threading
from email import policy
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from shared.oauth import TokenSource
from shared.tenant import MailboxConfig

from .forward import Forward, compose
from .notice import compose_notice

if TYPE_CHECKING:
    from imapclient import IMAPClient

log = structlog.get_logger(__name__)


class FolderWriter(Protocol):
    name: str

    async def put(self, path: str, copy: Forward) -> bool:
        """Store `copy` in the folder at `path` ("A/B" under the top of the mailbox, or INBOX;
        created when missing) unless it is there already; True if stored now."""
        ...

    async def close(self) -> None: ...


def open_writer(config: MailboxConfig) -> FolderWriter:
    if config.kind == "ews":
        from .ews_folder import EwsFolderWriter

        return EwsFolderWriter(config)
    if config.kind == "graph":
        from .graph_folder import GraphFolderWriter

        return GraphFolderWriter(config)
    return ImapFolderWriter(config)


def mime(copy: Forward) -> bytes:
    """The copy as it is stored: the forward (for a sensitive item only the notice, as by SMTP:
    a shared mailbox is read widely too), CRLF line ends (IMAP APPEND and EWS want them)."""
    message = compose_notice(copy) if copy.sensitive else compose(copy)
    return message.as_bytes(policy=policy.SMTP)


class ImapFolderWriter:
    """imapclient (blocking: each call in a worker thread, one at a time per mailbox)."""

    def __init__(self, config: MailboxConfig) -> None:
        self.config = config
        self.name = config.name
        self._client: IMAPClient | None = None
        self._delimiter = "/"
        self._lock = asyncio.Lock()
        self._thread_lock = threading.Lock()  # holds while a cancelled caller's thread runs on
        self._tokens = TokenSource(config.oauth()) if config.auth == "oauth2" else None

    def _connect(self) -> IMAPClient:
        if self._client is not None:
            return self._client
        from imapclient import IMAPClient

        cfg = self.config
        client = IMAPClient(cfg.host, port=cfg.port, ssl=cfg.ssl, timeout=60)
        try:
            if self._tokens is None:
                client.login(cfg.username, cfg.secret())
            else:
                client.oauth2_login(cfg.username, self._tokens.token_sync())
            for _flags, delim, _name in client.list_folders(directory="", pattern="INBOX"):
                if delim:  # configured paths use "/"; dovecot's maildir default is "."
                    self._delimiter = delim.decode() if isinstance(delim, bytes) else str(delim)
        except Exception:
            if self._tokens is not None:
                self._tokens.invalidate()  # maybe revoked: the next attempt asks anew
            _quietly(client.logout)
            raise
        self._client = client
        return client

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            _quietly(client.logout)

    def _put(self, path: str, message_id: str, raw: bytes) -> bool:
        client = self._connect()
        folder = "INBOX" if path.upper() == "INBOX" else path.replace("/", self._delimiter)
        if not client.folder_exists(folder):
            client.create_folder(folder)
            log.info("created mailbox folder", mailbox=self.name, folder=folder)
        client.select_folder(folder, readonly=True)  # SEARCH needs a selected folder
        if client.search(["HEADER", "Message-ID", message_id]):
            return False
        client.append(folder, raw, flags=())  # no \Seen: it shows as unread
        return True

    def _locked(self, fn: Any, *args: Any) -> Any:
        with self._thread_lock:
            try:
                return fn(*args)
            except Exception:
                self._drop()  # a broken connection is reopened on the next call
                raise

    async def put(self, path: str, copy: Forward) -> bool:
        raw = mime(copy)
        async with self._lock:
            return bool(await asyncio.to_thread(self._locked, self._put, path, copy.msgid, raw))

    async def close(self) -> None:
        async with self._lock:
            await asyncio.to_thread(self._locked, self._drop)


def _quietly(fn: Any) -> None:
    try:
        fn()
    except Exception:  # closing a broken connection may fail too; nothing to do about it
        log.debug("ignored error while closing", exc_info=True)
