"""One mailbox's connection to Exchange Web Services (exchangelib), for the ingest adapter
(services/ingest/ews.py) and the delivery folder writer (services/delivery/ews_folder.py).

A named endpoint (no autodiscover), delegate access or impersonation (the ApplicationImpersonation
role), NTLM/basic/digest, OAuth 2.0 client credentials (app-only: impersonation), or no
authentication against a loopback test server; a fixed server version or the server's own.
exchangelib is synchronous (requests), so every call runs in a worker thread, one at a time
per connection; a call that fails drops the connection, and the next one connects afresh.

Importing this module imports exchangelib but connects nowhere; the first call connects.
"""

from __future__ import annotations

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
from exchangelib.errors import ErrorFolderNotFound
from exchangelib.folders import BaseFolder, Folder, Inbox, MsgFolderRoot
from exchangelib.protocol import Protocol
from exchangelib.services import CreateFolder
from exchangelib.transport import BASIC, DIGEST, NOAUTH, NTLM, OAUTH2

from shared.errors import ConfigurationError
from shared.serial import SerialConnection
from shared.tenant import MailboxConfig

log = structlog.get_logger(__name__)

LOOPBACK = ("127.0.0.1", "::1", "localhost")


class EwsConnection(SerialConnection):
    """The Account of one mailbox, made on first use and cached with the folders looked up.

    `pool` names the user of the connection (e.g. "ingest"): with the mailbox name it goes into
    the credentials, which exchangelib's connection pools are cached by (with the endpoint), so
    neither two mailboxes of one service account nor two services in one process share a pool,
    and dropping one connection never closes another's.
    """

    def __init__(self, config: MailboxConfig, pool: str) -> None:
        super().__init__()
        check(config)
        self.config = config
        self.name = config.name
        self._pool_key = f"{pool}:{config.name}"
        self._account: Account | None = None
        self._folders: dict[str, BaseFolder] = {}

    # --- in the worker thread ---------------------------------------------------------------

    def account(self) -> Account:
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

    def folder(self, path: str) -> BaseFolder:
        """The folder at `path` ("INBOX", or "A/B" under the top of the mailbox), created when
        missing; every folder on the way is looked up once per connection."""
        if path in self._folders:
            return self._folders[path]
        account = self.account()
        if path.upper() == "INBOX":
            folder: BaseFolder = Inbox.get_distinguished(root=account.root)
        elif not path:
            folder = MsgFolderRoot.get_distinguished(root=account.root)
        else:
            parent_path, _, name = path.rpartition("/")
            parent = self.folder(parent_path)
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

    def drop(self) -> None:
        account, self._account = self._account, None
        self._folders = {}
        if account is not None:
            try:
                protocol = account.protocol
                del Protocol[protocol.config]  # the next connection starts afresh
                protocol.close()
            except Exception:  # closing a broken connection may fail too
                log.debug("ignored error while closing", exc_info=True)

    def _credentials(self) -> tuple[Any, str]:
        cfg = self.config
        if cfg.ews_auth == "OAuth 2.0":
            return _oauth2_credentials(cfg, self._pool_key), OAUTH2
        if cfg.ews_auth == "no authentication":
            return _PoolCredentials("", "", self._pool_key), NOAUTH
        auth = {"NTLM": NTLM, "basic": BASIC, "digest": DIGEST}
        return _PoolCredentials(cfg.username, cfg.secret(), self._pool_key), auth[cfg.ews_auth]


def check(config: MailboxConfig) -> None:
    """Refuse an EWS mailbox configuration that cannot work or would be unsafe."""
    if not config.address:
        raise ConfigurationError(f"mailbox {config.name}: ews needs the address")
    if not config.ews_url:
        # Autodiscover (DNS and HTTPS lookups under the mail domain) cannot be tested here,
        # so it is not offered: the endpoint is named.
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


class _PoolCredentials(Credentials):
    def __init__(self, username: str, password: str, pool_key: str) -> None:
        super().__init__(username, password)
        self.pool_key = pool_key  # part of equality and hash, so of the protocol cache key


def _oauth2_credentials(cfg: MailboxConfig, pool_key: str) -> Any:
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
    credentials = TenantOAuth2Credentials(client_id=oauth.client_id,
                                          client_secret=oauth.client_secret(),
                                          tenant_id=oauth.tenant_id,
                                          identity=Identity(primary_smtp_address=cfg.address))
    # The identity tells mailboxes apart; the key tells the users of one mailbox apart (the
    # ingest and the delivery connection in one process would otherwise share one pool).
    credentials.pool_key = pool_key
    return credentials
