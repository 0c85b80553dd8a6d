"""The whole pipeline: services as real processes against real RabbitMQ, PostgreSQL, dovecot and
an SMTP server, or all in one process on SQLite."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from shared.settings import DEMO_TENANT_DIR
from tests.conftest import free_port, new_database
from tests.support.dovecot import DovecotServer, dovecot  # noqa: F401  (fixture)
from tests.support.smtp import smtp_server  # noqa: F401  (fixture)

IMAP_USER, IMAP_PASSWORD = "post@demoby.dk", "hemmelig"
FOLDER_BYGGERI = "Postfordeler/Byggeri"  # where byggeri's items are filed (delivery.folder)


@pytest.fixture
def fresh_pg() -> Iterator[str]:
    """A database of its own, so the reconciler sees only this test's items."""
    with new_database("pf_e2e") as url:
        yield url


@pytest.fixture
def tenant(tmp_path: Path, dovecot: DovecotServer) -> Path:  # noqa: F811
    dovecot.add_user(IMAP_USER, IMAP_PASSWORD)
    directory = tmp_path / "tenant"
    shutil.copytree(DEMO_TENANT_DIR, directory)
    (directory / "mailboxes.yaml").write_text(
        "mailboxes:\n"
        f"  - name: post\n    kind: imap\n    address: {IMAP_USER}\n"
        f"    host: {dovecot.host}\n    port: {dovecot.port}\n    ssl: false\n"
        f"    username: {IMAP_USER}\n    password_env: E2E_IMAP_PASSWORD\n", encoding="utf-8")
    # Byggeri works in a mailbox folder as well as by forward: a folder of the ingest's own
    # mailbox (which reads only its inbox).
    org = yaml.safe_load((directory / "org.yaml").read_text(encoding="utf-8"))
    for unit in org["units"]:
        if unit["id"] == "byggeri":
            unit["delivery"] = {"forward": True,
                                "folder": {"mailbox": "post", "path": FOLDER_BYGGERI}}
    (directory / "org.yaml").write_text(yaml.safe_dump(org, allow_unicode=True),
                                        encoding="utf-8")
    return directory


class Processes:
    """Postfordeler services as child processes, with their logs kept for failures."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.generation = 0

    def start(self, *services: str, name: str | None = None) -> str:
        self.generation += 1
        key = name or "+".join(services)
        log = (self.logs / f"{key}-{self.generation}.log").open("wb")
        self.procs[key] = subprocess.Popen(
            [sys.executable, "-m", "postfordeler", "run", *services, "--no-migrate"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return key

    def kill(self, key: str) -> None:
        proc = self.procs.pop(key)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def check_alive(self) -> None:
        dead = {k: p.returncode for k, p in self.procs.items() if p.poll() is not None}
        assert not dead, f"service processes exited: {dead}\n{self.tail()}"

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for key, proc in self.procs.items():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
                raise AssertionError(f"{key} did not stop on SIGTERM") from None
        self.procs.clear()

    def tail(self, lines: int = 30) -> str:
        out = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(out)


def service_env(tmp_path: Path, tenant: Path, *, database_url: str, amqp_url: str,
                smtp_port: int, api_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTFORDELER_")}
    env.update({
        "POSTFORDELER_DATA_DIR": str(tmp_path / "data"),
        "POSTFORDELER_DATABASE_URL": database_url,
        "POSTFORDELER_AMQP_URL": amqp_url,
        "POSTFORDELER_EXCHANGE": f"pf-e2e-{uuid.uuid4().hex[:8]}",
        "POSTFORDELER_TENANT_DIR": str(tenant),
        "POSTFORDELER_SMTP_HOST": "127.0.0.1",
        "POSTFORDELER_SMTP_PORT": str(smtp_port),
        "POSTFORDELER_POLL_INTERVAL": "0.5",
        "POSTFORDELER_RETRY_BASE_DELAY": "0.2",
        "POSTFORDELER_STUCK_AFTER": "10",
        "POSTFORDELER_RECONCILE_INTERVAL": "2",
        "POSTFORDELER_RELAY_INTERVAL": "1",
        "POSTFORDELER_API_PORT": str(api_port),
        "POSTFORDELER_LOG_LEVEL": "INFO",
        "E2E_IMAP_PASSWORD": IMAP_PASSWORD,
        "PYTHONUNBUFFERED": "1",
    })
    return env


@pytest.fixture
def api_port() -> int:
    return free_port()


CONSUMERS = ("extractor", "classifier", "router", "journal", "journal-receipts", "delivery")


async def remove_topology(env: dict[str, str]) -> None:
    """Delete the test's exchange and queues, so runs leave nothing on the shared broker."""
    from shared.bus import RetryPolicy
    from shared.bus._rabbitmq import RabbitBus

    defaults = RetryPolicy()
    bus = RabbitBus(env["POSTFORDELER_AMQP_URL"], exchange=env["POSTFORDELER_EXCHANGE"],
                    policy=RetryPolicy(defaults.max_attempts,
                                       float(env["POSTFORDELER_RETRY_BASE_DELAY"]),
                                       defaults.max_delay))
    await bus.connect()
    try:
        await bus.delete_topology(CONSUMERS)
    finally:
        await bus.close()
