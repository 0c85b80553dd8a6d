"""Tenants whose `parkering` unit files its items into a mailbox folder, and the mailbox
configurations for the local IMAP, EWS and Graph servers (for the folder-delivery tests and
bench/delivery_folders.py)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from shared.settings import DEMO_TENANT_DIR
from tests.support.dovecot import DovecotServer
from tests.support.ews_server import EwsServer
from tests.support.graph_server import GraphServer

FOLDER = "Postfordeler/Parkering"
SHARED = "parkering@demoby.dk"
SVC = "DEMOBY\\svc-postfordeler"
SVC_ADDRESS = "svc-postfordeler@demoby.dk"


def tenant_with(directory: Path, mailbox: dict[str, Any], *, forward: bool = False,
                unit: str = "parkering", path: str = FOLDER) -> Path:
    """The demo tenant (or the one already in `directory`); `unit` files into `path` of
    `mailbox`, a delivery mailbox."""
    if not directory.exists():
        shutil.copytree(DEMO_TENANT_DIR, directory)
    org = yaml.safe_load((directory / "org.yaml").read_text(encoding="utf-8"))
    for u in org["units"]:
        if u["id"] == unit:
            u["delivery"] = {"forward": forward,
                             "folder": {"mailbox": mailbox["name"], "path": path}}
    (directory / "org.yaml").write_text(yaml.safe_dump(org, allow_unicode=True),
                                        encoding="utf-8")
    (directory / "mailboxes.yaml").write_text(yaml.safe_dump(
        {"mailboxes": [], "delivery_mailboxes": [mailbox]}))
    return directory


def imap_box(dovecot: DovecotServer) -> dict[str, Any]:
    """User `parkering`, password in $PF_TEST_IMAP_PASSWORD."""
    return {"name": "parkering-imap", "kind": "imap", "host": dovecot.host,
            "port": dovecot.port, "ssl": False, "username": "parkering",
            "password_env": "PF_TEST_IMAP_PASSWORD", "address": SHARED}


def ews_box(ews: EwsServer) -> dict[str, Any]:
    """The service account SVC with delegate rights; password in $PF_TEST_EWS_PASSWORD."""
    return {"name": "parkering-ews", "kind": "ews", "address": SHARED, "ews_url": ews.url,
            "ews_auth": "basic", "username": SVC, "password_env": "PF_TEST_EWS_PASSWORD",
            "ews_version": "15.1.2507.6"}


def graph_box(graph: GraphServer) -> dict[str, Any]:
    """The app `postfordeler`, secret in $PF_TEST_GRAPH_SECRET."""
    return {"name": "parkering-graph", "kind": "graph", "address": SHARED, "auth": "oauth2",
            "graph_url": f"{graph.url}/v1.0",
            "oauth2": {"token_url": f"{graph.url}/tenant-1/oauth2/v2.0/token",
                       "client_id": "postfordeler",
                       "client_secret_env": "PF_TEST_GRAPH_SECRET"}}
