"""shared/ews.py: exchangelib caches a connection pool per endpoint and credentials, and a
dropped connection removes its pool from that cache and closes it. The credentials therefore
tell apart both mailboxes and the services using one mailbox (ingest reads it, delivery writes
into it; in one process neither may close the other's pool) while one service's connections
to one mailbox stay equal. Built without any I/O (no token is fetched)."""

from __future__ import annotations

import pytest

from shared.ews import EwsConnection
from shared.tenant import MailboxConfig, OAuth2Config


def mailbox(name: str, auth: str) -> MailboxConfig:
    return MailboxConfig(
        name=name, kind="ews", address="post@demoby.dk",
        ews_url="http://127.0.0.1:1/EWS/Exchange.asmx", ews_auth=auth,
        access_type="impersonation", username="svc", password_env="PF_TEST_EWS_PW",
        oauth2=OAuth2Config(token_url="http://127.0.0.1:1/token", client_id="app",
                            client_secret_env="PF_TEST_EWS_SECRET"))


@pytest.mark.parametrize("auth", ["OAuth 2.0", "NTLM", "no authentication"])
def test_pools_per_service_and_mailbox(auth: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PF_TEST_EWS_SECRET", "s3cret")
    monkeypatch.setenv("PF_TEST_EWS_PW", "pw")

    def credentials(name: str, pool: str) -> object:
        return EwsConnection(mailbox(name, auth), pool)._credentials()[0]

    ingest = credentials("post", "ingest")
    assert ingest == credentials("post", "ingest")
    assert hash(ingest) == hash(credentials("post", "ingest"))
    assert ingest != credentials("post", "delivery")
    assert ingest != credentials("post-2", "ingest")
