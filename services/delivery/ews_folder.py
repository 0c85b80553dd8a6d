"""Putting an item into a folder of an Exchange mailbox through EWS (exchangelib).

The copy is created from its MIME content in the target folder: exchangelib's Message.save()
sends CreateItem with MessageDisposition="SaveOnly" and SavedItemFolderId. A MIME import is a
draft unless PR_MESSAGE_FLAGS (0x0E07) is set when the item is created (Microsoft's "Exporting
and importing items by using EWS"); 0 makes it a received, unread message. Before creating,
FindItem with a restriction on message:InternetMessageId looks for an earlier copy.

The connection is shared with the ingest adapter (shared/ews.py): delegate access or impersonation,
NTLM/basic/digest or OAuth2 (app-only: impersonation), a named endpoint (no autodiscover), a
fixed version or the server's, one worker thread per call.
"""

from __future__ import annotations

import threading

from exchangelib import ExtendedProperty, Message

from shared.ews import EwsConnection
from shared.tenant import MailboxConfig

from .folders import mime
from .forward import Forward

FLAGS_FIELD = "postfordeler_message_flags"
_register_lock = threading.Lock()


class MessageFlags(ExtendedProperty):
    """PidTagMessageFlags: writable until the item is first saved."""

    property_tag = 0x0E07
    property_type = "Integer"


def _register() -> None:
    # exchangelib's documented way to send an extended property; done once, when the first
    # EWS writer is made (never at import time).
    with _register_lock:
        if FLAGS_FIELD not in {f.name for f in Message.FIELDS}:
            Message.register(FLAGS_FIELD, MessageFlags)


class EwsFolderWriter:
    def __init__(self, config: MailboxConfig) -> None:
        self._ews = EwsConnection(config, "delivery")  # checks the configuration
        _register()
        self.config = config
        self.name = config.name

    def _put(self, path: str, message_id: str, raw: bytes) -> bool:
        account = self._ews.account()
        folder = self._ews.folder(path)
        if folder.filter(message_id=message_id).exists():  # FindItem, IsEqualTo restriction
            return False
        message = Message(account=account, folder=folder, mime_content=raw)
        setattr(message, FLAGS_FIELD, 0)  # not a draft, not read
        message.save()  # CreateItem, SaveOnly, into `folder`
        return True

    async def put(self, path: str, copy: Forward) -> bool:
        raw = mime(copy)
        return bool(await self._ews.call(self._put, path, copy.msgid, raw))

    async def close(self) -> None:
        await self._ews.close()
