"""Exchange Server on premises through Exchange Web Services (exchangelib).

The main mailbox or a shared one, opened with delegate rights (the service account has full
access to it) or by impersonation (the ApplicationImpersonation role). Per poll one
SyncFolderItems round over the inbox folder, resumed from the SyncState of the last round
(saved in `mailbox_sync` once every message it covered has been moved, see `syncstate`);
GetItem with the MIME content; after the item is committed, MoveItem to the processed or
failed folder (created under the top of the mailbox when missing).

Refs are EWS item ids: stable while the message waits in the inbox (a moved item gets a new
id, which we never need). exchangelib is synchronous (requests), so every call runs in a
worker thread, one at a time per mailbox on the mailbox's own connection.
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
    Identity,
    OAuth2Credentials,
    Version,
)
from exchangelib.errors import ErrorFolderNotFound, ErrorItemNotFound
from exchangelib.folders import BaseFolder, Folder, Inbox, MsgFolderRoot
from exchangelib.properties import ItemId
from exchangelib.protocol import Protocol
from exchangelib.services import CreateFolder
from exchangelib.transport import BASIC, DIGEST, NOAUTH, NTLM, OAUTH2

from shared.errors import ConfigurationError, TransientError
from shared.tenant import MailboxConfig

from .syncstate import SyncCursor, SyncStore

log = structlog.get_logger(__name__)

MAX_CHANGES = 512  # the most SyncFolderItems returns in one answer
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class EwsMailbox:
    def __init__(self, config: MailboxConfig, sync: SyncStore | None = None) -> None:
        if not config.address:
            raise ConfigurationError(f"mailbox {config.name}: ews needs the address")
        if not config.ews_url:
            # Autodiscover (DNS and HTTPS lookups under the mail domain) cannot be tested
            # here, so it is not offered: the endpoint is named.
            raise ConfigurationError(f"mailbox {config.name}: ews needs ews_url (autodiscover "
                                     "is not supported)")
        if config.ews_auth == "no authentication" and not _loopback(config.ews_url):
            # Only a local test server goes without authentication; a typo in a tenant's
            # configuration must not send requests unauthenticated to a real server.
            raise ConfigurationError(f"mailbox {config.name}: 'no authentication' is only "
                                     "allowed for an http://127.0.0.1 endpoint")
        if config.ews_auth == "OAuth 2.0" and config.access_type != "impersonation":
            # An app-only token has no mailbox of its own: Exchange answers every request
            # without an ExchangeImpersonation header with a fault, so delegate cannot work.
            raise ConfigurationError(f"mailbox {config.name}: ews_auth 'OAuth 2.0' (app-only "
                                     "token) needs access_type: impersonation")
        self.config = config
        self.name = config.name
        self._account: Account | None = None
        self._inbox: BaseFolder | None = None
        self._folders: dict[str, BaseFolder] = {}
        self._pending: dict[str, str] = {}  # item id -> DateTimeReceived (ISO)
        self._cursor = SyncCursor(sync, config.name, f"ews:{config.address.lower()}:"
                                                     f"{config.folder}")
        # Same discipline as ImapMailbox: the asyncio lock keeps callers in order, the thread
        # lock holds when a cancelled caller's thread is still running.
        self._lock = asyncio.Lock()
        self._thread_lock = threading.Lock()

    # --- connection -------------------------------------------------------------------------

    def _connect(self) -> Account:
        if self._account is not None:
            return self._account
        cfg = self.config
        credentials, auth_type = self._credentials()
        version = _version(cfg.ews_version)
        access = IMPERSONATION if cfg.access_type == "impersonation" else DELEGATE
        config = Configuration(service_endpoint=cfg.ews_url, credentials=credentials,
                               auth_type=auth_type, version=version, max_connections=1)
        account = Account(cfg.address, config=config, autodiscover=False, access_type=access)
        self._account = account
        return account

    def _credentials(self) -> tuple[Any, str]:
        cfg = self.config
        if cfg.ews_auth == "OAuth 2.0":
            return _oauth2_credentials(cfg), OAUTH2
        auth = {"NTLM": NTLM, "basic": BASIC, "digest": DIGEST}
        # The mailbox name in the credentials keeps exchangelib from sharing one connection
        # pool (cached per endpoint and credentials) between mailboxes of one service account.
        if cfg.ews_auth == "no authentication":
            return _MailboxCredentials("", "", cfg.name), NOAUTH
        return _MailboxCredentials(cfg.username, cfg.secret(), cfg.name), auth[cfg.ews_auth]

    def _drop(self) -> None:
        account, self._account = self._account, None
        self._inbox, self._folders = None, {}
        if account is not None:
            try:
                protocol = account.protocol
                del Protocol[protocol.config]  # the next connection starts afresh
                protocol.close()
            except Exception:  # closing a broken connection may fail too
                log.debug("ignored error while closing", exc_info=True)

    def _locked(self, fn: Any, *args: Any) -> Any:
        with self._thread_lock:
            try:
                return fn(*args)
            except Exception:
                self._drop()  # reconnect on the next call
                raise

    async def _call(self, fn: Any, *args: Any) -> Any:
        async with self._lock:
            return await asyncio.to_thread(self._locked, fn, *args)

    # --- folders ----------------------------------------------------------------------------

    def _folder(self, path: str) -> BaseFolder:
        """The folder at `path` ("INBOX", or "A/B" under the top of the mailbox), created when
        missing; every folder on the way is looked up once per connection."""
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
                # The service, not Folder.save(): save() resolves the parent through a walk
                # of the whole folder tree.
                folder = CreateFolder(account=account).get(
                    parent_folder=parent, folders=[Folder(root=parent.root, name=name)])
                log.info("created mailbox folder", mailbox=self.name, folder=path)
        self._folders[path] = folder
        return folder

    # --- operations (in the worker thread) --------------------------------------------------

    def _sync(self, state: str | None) -> tuple[list[tuple[str, str, str]], str | None]:
        inbox = self._folder(self.config.folder)
        for path in (self.config.processed_folder, self.config.failed_folder):
            self._folder(path)  # created before the first message needs it
        changes = []
        for kind, item in inbox.sync_items(sync_state=state, only_fields=["datetime_received"],
                                           max_changes_returned=MAX_CHANGES):
            if kind == "create":
                received = item.datetime_received.isoformat() if item.datetime_received else ""
                changes.append((kind, item.id, received))
            elif kind == "delete":
                changes.append((kind, item.id, ""))
            # updates and read flags do not change what waits in the folder
        return changes, inbox.item_sync_state

    def _fetch(self, ref: str) -> bytes:
        account = self._connect()
        [item] = list(account.fetch(ids=[ItemId(id=ref)], only_fields=["mime_content"]))
        if isinstance(item, ErrorItemNotFound):
            self._pending.pop(ref, None)
            raise TransientError(f"mailbox {self.name}: message vanished")
        if isinstance(item, Exception):
            raise item
        if not item.mime_content:
            raise TransientError(f"mailbox {self.name}: no MIME content for a message")
        return bytes(item.mime_content)

    def _move(self, ref: str, path: str) -> None:
        account = self._connect()
        [result] = account.bulk_move(ids=[ItemId(id=ref)], to_folder=self._folder(path)) or [None]
        if isinstance(result, ErrorItemNotFound):
            # Not in the inbox any more (moved by an earlier attempt whose answer was lost, or
            # by a person): it cannot be listed again, which is all a move is for.
            log.info("message already gone from the inbox", mailbox=self.name)
        elif isinstance(result, Exception):
            raise result
        self._pending.pop(ref, None)

    # --- Mailbox protocol -------------------------------------------------------------------

    async def list_new(self) -> list[str]:
        state = await self._cursor.load()
        await self._cursor.settle(bool(self._pending))  # last round's messages all moved
        try:
            changes, state = await self._call(self._sync, state)
        except Exception as exc:
            if state is None:
                raise
            # ErrorInvalidSyncStateData (expired, or from another server), which exchangelib
            # may also fail to parse: a full sync lists what is still in the folder, so it is
            # always safe, and a mailbox never sticks on a saved state it cannot use.
            log.warning("ews sync from the saved state failed, full sync", mailbox=self.name,
                        error=type(exc).__name__)
            self._pending.clear()
            changes, state = await self._call(self._sync, None)
        for kind, ref, received in changes:
            if kind == "create":
                self._pending[ref] = received
            else:
                self._pending.pop(ref, None)
        self._cursor.state = state
        await self._cursor.settle(bool(self._pending))
        # DateTimeReceived has whole seconds; within one, the order the sync reported them in
        return sorted(self._pending, key=lambda ref: self._pending[ref])

    async def fetch(self, ref: str) -> bytes:
        return bytes(await self._call(self._fetch, ref))

    async def mark_processed(self, ref: str) -> None:
        await self._call(self._move, ref, self.config.processed_folder)
        await self._cursor.settle(bool(self._pending))

    async def mark_failed(self, ref: str) -> None:
        await self._call(self._move, ref, self.config.failed_folder)
        await self._cursor.settle(bool(self._pending))

    async def wait(self, interval: float) -> None:
        # EWS push/streaming notifications need a listener; a sync round is cheap.
        await asyncio.sleep(interval)

    async def close(self) -> None:
        async with self._lock:
            await asyncio.to_thread(self._locked, self._drop)


def _loopback(url: str | None) -> bool:
    parts = urlsplit(url or "")
    return parts.scheme == "http" and parts.hostname in LOOPBACK


def _version(build: str | None) -> Any:
    """A fixed server version saves exchangelib's probing; none: ask the server."""
    if not build:
        return None
    try:
        return Version(build=Build(*(int(part) for part in build.split("."))))
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"ews_version {build!r}: expected e.g. 15.1.2507.6") from exc


class _MailboxCredentials(Credentials):
    def __init__(self, username: str, password: str, mailbox: str) -> None:
        super().__init__(username, password)
        self.mailbox = mailbox  # part of equality and hash, so of the protocol cache key


def _oauth2_credentials(cfg: MailboxConfig) -> Any:
    """Client credentials against the tenant's token endpoint (Entra ID for hybrid modern
    auth, or AD FS), with the scope the configuration names."""
    oauth = cfg.oauth()
    token_url, scope = oauth.endpoint(), oauth.scope

    class TenantOAuth2Credentials(OAuth2Credentials):
        @property
        def token_url(self) -> str:
            return token_url

        @property
        def scope(self) -> list[str]:
            return [scope]

    # The identity makes exchangelib impersonate the mailbox in the calls outside the account
    # too (the version probe when ews_version is not set), which Exchange demands of app tokens.
    return TenantOAuth2Credentials(client_id=oauth.client_id,
                                   client_secret=oauth.client_secret(),
                                   tenant_id=oauth.tenant_id,
                                   identity=Identity(primary_smtp_address=cfg.address))
