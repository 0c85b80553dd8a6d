"""A throwaway RabbitMQ node for tests that stop and restart the broker.

The shared broker on 5672 must never be restarted by a test, so restart tests get their own
node: its own name, ports, cookie, mnesia and log directories under a temporary directory,
started with the distribution's `rabbitmq-server -detached` (about 8 s to come up). Stopping and
starting again keeps the mnesia directory, so durable exchanges, queues and persistent messages
survive a restart just as they do in production.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RABBIT_BIN = Path(os.environ.get("POSTFORDELER_RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def available() -> bool:
    return (RABBIT_BIN / "rabbitmq-server").exists() and shutil.which("erl") is not None


class RabbitNode:
    """One RabbitMQ node in `base`; `url` stays the same across stop()/start()."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.name = f"pftest{secrets.token_hex(4)}@localhost"
        self.port = _free_port()
        self.dist_port = _free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        home = base / "home"
        home.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16))
        cookie.chmod(0o400)
        conf = base / "rabbitmq.conf"
        conf.write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n"
                        "loopback_users = none\n")
        (base / "enabled_plugins").write_text("[].\n")
        (base / "rabbitmq-env.conf").write_text("")  # do not pick up the system node's name
        self.env = {
            **os.environ,
            "HOME": str(home),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_CONFIG_FILE": str(conf),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(base / "rabbit.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def _ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(RABBIT_BIN / "rabbitmqctl"), "-n", self.name, *args],
                              env=self.env, capture_output=True, text=True, timeout=timeout)

    def start(self, timeout: float = 60) -> None:
        subprocess.run([str(RABBIT_BIN / "rabbitmq-server"), "-detached"], env=self.env,
                       check=True, capture_output=True, timeout=30)
        # `rabbitmqctl await_startup` waits for the node; the port check covers the listener.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = self._ctl("await_startup", "--timeout", "5", timeout=15)
            if done.returncode == 0 and _port_open(self.port):
                return
            time.sleep(0.2)
        raise RuntimeError(f"RabbitMQ node {self.name} did not start; logs in {self.base}/log")

    def stop(self) -> None:
        self._ctl("stop")
        deadline = time.monotonic() + 30
        while _port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)


@contextmanager
def rabbit_node() -> Iterator[RabbitNode]:
    """A started throwaway node, stopped and deleted afterwards."""
    base = Path(tempfile.mkdtemp(prefix="pf-rabbit-"))
    node = RabbitNode(base)
    try:
        node.start()
        yield node
    finally:
        node.stop()
        shutil.rmtree(base, ignore_errors=True)
