"""One mailbox's IMAP connection (imapclient), for the ingest adapter
(services/ingest/mailboxes.py) and the delivery folder writer (services/delivery/folders.py).

Login with the password or with OAuth2 (SASL XOAUTH2, token from shared/oauth.py). imapclient
is blocking and not thread-safe, so every call runs in a worker thread, one at a time per
connection; a call that fails drops the connection, and the next one connects afresh.

Making a connection connects nowhere (imapclient is imported on the first call).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from shared.oauth import TokenSource
from shared.serial import SerialConnection
from shared.tenant import MailboxConfig

if TYPE_CHECKING:
    from imapclient import IMAPClient

log = structlog.get_logger(__name__)

TIMEOUT = 60.0


class ImapConnection(SerialConnection):
    """The logged-in client of one mailbox, made on first use.

    `setup(client)` runs once per new connection after login (e.g. creating folders, selecting
    the inbox); when it fails, the connection is closed and the error raised.
    """

    def __init__(self, config: MailboxConfig,
                 setup: Callable[[IMAPClient], None] | None = None) -> None:
        super().__init__()
        self.config = config
        self.name = config.name
        self.delimiter = "/"  # the server's hierarchy delimiter, known once connected
        self.client: IMAPClient | None = None
        self._setup = setup
        self._tokens = TokenSource(config.oauth()) if config.auth == "oauth2" else None

    # --- in the worker thread ---------------------------------------------------------------

    def connect(self) -> IMAPClient:
        if self.client is not None:
            return self.client
        from imapclient import IMAPClient

        cfg = self.config
        client = IMAPClient(cfg.host, port=cfg.port, ssl=cfg.ssl, timeout=TIMEOUT)
        try:
            self._login(client)
            self.delimiter = _delimiter(client)
            if self._setup is not None:
                self._setup(client)
        except Exception:
            _quietly(client.logout)
            raise
        self.client = client
        return client

    def folder(self, path: str) -> str:
        """The server's name of the folder at `path` (configured paths use "/")."""
        return "INBOX" if path.upper() == "INBOX" else path.replace("/", self.delimiter)

    def drop(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            _quietly(client.logout)

    def _login(self, client: IMAPClient) -> None:
        cfg = self.config
        if self._tokens is None:
            client.login(cfg.username, cfg.secret())
            return
        from imapclient.exceptions import LoginError

        try:
            # imapclient sends the SASL XOAUTH2 string (oauth.xoauth2_string) base64-encoded
            client.oauth2_login(cfg.username, self._tokens.token_sync())
        except LoginError:
            self._tokens.invalidate()  # maybe revoked: the next attempt asks for a new one
            raise


def _delimiter(client: IMAPClient) -> str:
    # Configured folders use "/"; servers differ (dovecot's maildir default is ".").
    for _flags, delim, _name in client.list_folders(directory="", pattern="INBOX"):
        if delim:
            return delim.decode() if isinstance(delim, bytes) else str(delim)
    return "/"


def _quietly(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception:  # closing a broken connection may fail too; nothing to do about it
        log.debug("ignored error while closing", exc_info=True)
