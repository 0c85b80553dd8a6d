"""Putting an item into a folder of a unit's mailbox (org.yaml `delivery.folder`): IMAP APPEND
here, EWS CreateItem (ews_folder.py) and Graph create-message (graph_folder.py).

Every writer first looks in the folder for the copy's Message-ID (Graph: an extended property
that carries it) and stores nothing when it is there, so a delivery repeated after a crash
between storing and recording "sent" leaves one copy, not two. The copy arrives unread and is
not a draft. Connections are kept per mailbox and reopened after an error.
"""

from __future__ import annotations

from email import policy
from typing import Protocol

import structlog

from shared.imap import ImapConnection
from shared.tenant import MailboxConfig

from .forward import Forward, compose
from .notice import compose_notice

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
    """APPEND through the mailbox's IMAP connection (shared/imap.py, shared with ingest)."""

    def __init__(self, config: MailboxConfig) -> None:
        self.config = config
        self.name = config.name
        self._imap = ImapConnection(config)
        self._subscribed: set[str] = set()

    def _put(self, path: str, message_id: str, raw: bytes) -> bool:
        client = self._imap.connect()
        folder = self._imap.folder(path)
        if not client.folder_exists(folder):
            client.create_folder(folder)
            log.info("created mailbox folder", mailbox=self.name, folder=folder)
        if folder not in self._subscribed:
            # Mail clients that list subscribed folders only (Thunderbird's default, many
            # webmails) would not show a folder created here. Once per writer, also after a
            # crash between CREATE and SUBSCRIBE; subscribing again is harmless.
            client.subscribe_folder(folder)
            self._subscribed.add(folder)
        client.select_folder(folder, readonly=True)  # SEARCH needs a selected folder
        if client.search(["HEADER", "Message-ID", message_id]):
            return False
        client.append(folder, raw, flags=())  # no \Seen: it shows as unread
        return True

    async def put(self, path: str, copy: Forward) -> bool:
        raw = mime(copy)
        return bool(await self._imap.call(self._put, path, copy.msgid, raw))

    async def close(self) -> None:
        await self._imap.close()
