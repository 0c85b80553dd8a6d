"""Putting an item into a folder of an Exchange mailbox through EWS (exchangelib).

The copy is created from its MIME content in the target folder: exchangelib's Message.save()
sends CreateItem with MessageDisposition="SaveOnly" and SavedItemFolderId. A MIME import is a
draft unless PR_MESSAGE_FLAGS (0x0E07) is set when the item is created (Microsoft's "Exporting
and importing items by using EWS"); 0 makes it a received, unread message. Before creating,
FindItem with a restriction on message:InternetMessageId looks for an earlier copy.

The connection follows the ingest adapter (services/ingest/ews.py): delegate access or
impersonation, NTLM/basic/digest or OAuth2 (app-only: impersonation), a named endpoint (no
autodiscover), a fixed version or the server's, one worker thread per call. Services do not
import each other, so the few lines of setup are repeated here.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any
from urllib.parse import urlsplit

import structlog
from exchangelib import (
    DELEGATE,
    IMPERSONATION,
    Account,
    Build,
    Configuration,
    Credentials,
    ExtendedProperty,
    Identity,
    Message,
    OAuth2Credentials,
    Version,
)
from exchangelib.errors import ErrorFolderNotFound
from exchangelib.folders import BaseFolder, Folder, Inbox, MsgFolderRoot
from exchangelib.protocol import Protocol
from exchangelib.services import CreateFolder
from exchangelib.transport import BASIC, DIGEST, NOAUTH, NTLM, OAUTH2

from shared.errors import ConfigurationError
from shared.tenant import MailboxConfig

from .folders import mime
from .forward import Forward

log = structlog.get_logger(__name__)

LOOPBACK = ("127.0.0.1", "::1", "localhost")
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
        if not config.address:
            raise ConfigurationError(f"mailbox {config.name}: ews needs the address")
        if not config.ews_url:
            raise ConfigurationError(f"mailbox {config.name}: ews needs ews_url (autodiscover "
                                     "is not supported)")
        if config.ews_auth == "no authentication" and not _loopback(config.ews_url):
            raise ConfigurationError(f"mailbox {config.name}: 'no authentication' is only "
                                     "allowed for an http://127.0.0.1 endpoint")
        if config.ews_auth == "OAuth 2.0" and config.access_type != "impersonation":
            # an app-only token has no mailbox of its own (as in services/ingest/ews.py)
            raise ConfigurationError(f"mailbox {config.name}: ews_auth 'OAuth 2.0' (app-only "
                                     "token) needs access_type: impersonation")
        _register()
        self.config = config
        self.name = config.name
        self._account: Account | None = None
        self._folders: dict[str, BaseFolder] = {}
        self._lock = asyncio.Lock()
        self._thread_lock = threading.Lock()

    def _connect(self) -> Account:
        if self._account is not None:
            return self._account
        cfg = self.config
        credentials, auth_type = self._credentials()
        access = IMPERSONATION if cfg.access_type == "impersonation" else DELEGATE
        config = Configuration(service_endpoint=cfg.ews_url, credentials=credentials,
                               auth_type=auth_type, version=_version(cfg.ews_version),
                               max_connections=1)
        account = Account(cfg.address, config=config, autodiscover=False, access_type=access)
        self._account = account
        return account

    def _credentials(self) -> tuple[Any, str]:
        cfg = self.config
        if cfg.ews_auth == "OAuth 2.0":
            return _oauth2_credentials(cfg), OAUTH2
        # A credentials object of its own (not equal to ingest's) keeps exchangelib from
        # sharing the ingest adapter's connection pool for the same mailbox.
        if cfg.ews_auth == "no authentication":
            return _WriterCredentials("", "", cfg.name), NOAUTH
        auth = {"NTLM": NTLM, "basic": BASIC, "digest": DIGEST}
        return _WriterCredentials(cfg.username, cfg.secret(), cfg.name), auth[cfg.ews_auth]

    def _drop(self) -> None:
        account, self._account = self._account, None
        self._folders = {}
        if account is not None:
            try:
                protocol = account.protocol
                del Protocol[protocol.config]
                protocol.close()
            except Exception:  # closing a broken connection may fail too
                log.debug("ignored error while closing", exc_info=True)

    def _folder(self, path: str) -> BaseFolder:
        if path in self._folders:
            return self._folders[path]
        account = self._connect()
        if path.upper() == "INBOX":
            folder: BaseFolder = Inbox.get_distinguished(root=account.root)
        elif not path:
            folder = MsgFolderRoot.get_distinguished(root=account.root)
        else:
            parent_path, _, name = path.rpartition("/")
            parent = self._folder(parent_path)
            try:
                folder = parent // name  # FindFolder, shallow, on the display name
            except ErrorFolderNotFound:
                folder = CreateFolder(account=account).get(
                    parent_folder=parent, folders=[Folder(root=parent.root, name=name)])
                log.info("created mailbox folder", mailbox=self.name, folder=path)
        self._folders[path] = folder
        return folder

    def _put(self, path: str, message_id: str, raw: bytes) -> bool:
        account = self._connect()
        folder = self._folder(path)
        if folder.filter(message_id=message_id).exists():  # FindItem, IsEqualTo restriction
            return False
        message = Message(account=account, folder=folder, mime_content=raw)
        setattr(message, FLAGS_FIELD, 0)  # not a draft, not read
        message.save()  # CreateItem, SaveOnly, into `folder`
        return True

    def _locked(self, fn: Any, *args: Any) -> Any:
        with self._thread_lock:
            try:
                return fn(*args)
            except Exception:
                self._drop()  # reconnect on the next call
                raise

    async def put(self, path: str, copy: Forward) -> bool:
        raw = mime(copy)
        async with self._lock:
            return bool(await asyncio.to_thread(self._locked, self._put, path, copy.msgid, raw))

    async def close(self) -> None:
        async with self._lock:
            await asyncio.to_thread(self._locked, self._drop)


def _loopback(url: str | None) -> bool:
    parts = urlsplit(url or "")
    return parts.scheme == "http" and parts.hostname in LOOPBACK


def _version(build: str | None) -> Any:
    if not build:
        return None
    try:
        return Version(build=Build(*(int(part) for part in build.split("."))))
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"ews_version {build!r}: expected e.g. 15.1.2507.6") from exc


class _WriterCredentials(Credentials):
    def __init__(self, username: str, password: str, mailbox: str) -> None:
        super().__init__(username, password)
        self.mailbox = f"delivery:{mailbox}"  # part of equality, so of the pool's cache key


def _oauth2_credentials(cfg: MailboxConfig) -> Any:
    oauth = cfg.oauth()
    token_url, scope = oauth.endpoint(), oauth.scope

    class TenantOAuth2Credentials(OAuth2Credentials):
        @property
        def token_url(self) -> str:
            return token_url

        @property
        def scope(self) -> list[str]:
            return [scope]

    return TenantOAuth2Credentials(client_id=oauth.client_id,
                                   client_secret=oauth.client_secret(),
                                   tenant_id=oauth.tenant_id,
                                   identity=Identity(primary_smtp_address=cfg.address))
