"""A throwaway dovecot IMAP server for tests: one foreground `dovecot -F` process per server,
users in a passwd-file, maildirs, state and logs all under one temporary directory.

As root, dovecot's login processes refuse to run as root: they run as `dovenull`, the internal
processes as `dovecot`, and mail is accessed as the `dovecot` user (so the directory is owned
by it). As a normal user everything runs as that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from tests.conftest import free_port, unavailable

_CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
info_log_path = {dir}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = 1
mail_location = maildir:~/Maildir
{capability}namespace inbox {{
  inbox = yes
  separator = {separator}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {dir}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={dir}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


def _world_traversable(path: Path) -> bool:
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents])


class DovecotServer:
    """`with DovecotServer(tmp_path) as imap:` -> `imap.host`, `imap.port`, `add_user`, ..."""

    host = "127.0.0.1"

    def __init__(self, tmpdir: Path | str, *, separator: str = "/",
                 capabilities: str | None = None) -> None:
        """`separator`: the IMAP hierarchy delimiter; `capabilities`: the full post-login
        CAPABILITY list to advertise (e.g. without MOVE, to test the COPY fallback)."""
        binary = shutil.which("dovecot") or (
            "/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None)
        if binary is None:
            unavailable("dovecot")
        self.binary = str(binary)
        tmpdir = Path(tmpdir)
        tmpdir.mkdir(parents=True, exist_ok=True)
        # The mail processes run as another user when we are root: they must reach the files.
        self._own_dir = not _world_traversable(tmpdir)
        self.dir = Path(tempfile.mkdtemp(prefix="pf-dovecot-")) if self._own_dir else tmpdir
        self.port = free_port()
        self.separator = separator
        self.capabilities = capabilities
        self._proc: subprocess.Popen[bytes] | None = None
        self._users: dict[str, str] = {}
        if os.geteuid() == 0:
            self.internal, self.login = "dovecot", "dovenull"
        else:
            self.internal = self.login = pwd.getpwuid(os.geteuid()).pw_name
        entry = pwd.getpwnam(self.internal)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid

    def __enter__(self) -> DovecotServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        self.dir.chmod(0o755)
        for sub in ("run", "state", "home"):
            (self.dir / sub).mkdir(exist_ok=True)
        os.chown(self.dir / "home", self.uid, self.gid)
        (self.dir / "users").write_text("")
        (self.dir / "users").chmod(0o644)
        conf = self.dir / "dovecot.conf"
        conf.write_text(_CONFIG.format(dir=self.dir, port=self.port, uid=self.uid, gid=self.gid,
                                       internal=self.internal, login=self.login,
                                       separator=self.separator,
                                       capability=self._capability_line()))
        self._proc = subprocess.Popen([self.binary, "-F", "-c", str(conf)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise RuntimeError(f"dovecot exited: {err} {self.log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                    if s.recv(100).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"dovecot did not come up: {self.log()}")

    def _capability_line(self) -> str:
        return f"imap_capability = {self.capabilities}\n" if self.capabilities else ""

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc is not None and self._proc.stderr:
            self._proc.stderr.close()
        self._proc = None
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        path = self.dir / "dovecot.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def add_user(self, name: str, password: str) -> None:
        """Add an IMAP user (dovecot re-reads the passwd-file when it changes)."""
        self._users[name] = password
        lines = "".join(f"{u}:{{PLAIN}}{p}\n" for u, p in self._users.items())
        (self.dir / "users").write_text(lines)

    def _client(self, user: str) -> Any:
        from imapclient import IMAPClient

        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=10)
        client.login(user, self._users[user])
        return client

    def append(self, user: str, folder: str, raw: bytes) -> None:
        """Put a message into `folder` (created if missing) with IMAP APPEND."""
        client = self._client(user)
        try:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            client.append(folder, raw)
        finally:
            client.logout()

    def count(self, user: str, folder: str) -> int:
        """Messages in `folder` (0 when it does not exist)."""
        client = self._client(user)
        try:
            if not client.folder_exists(folder):
                return 0
            return int(client.folder_status(folder, ["MESSAGES"])[b"MESSAGES"])
        finally:
            client.logout()

    def fetch_all(self, user: str, folder: str) -> list[bytes]:
        """The raw messages in `folder`, in UID order."""
        client = self._client(user)
        try:
            if not client.folder_exists(folder):
                return []
            client.select_folder(folder, readonly=True)
            uids = client.search(["ALL"])
            data = client.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
            return [data[u][b"BODY[]"] for u in sorted(data)]
        finally:
            client.logout()


@pytest.fixture
def dovecot(tmp_path: Path) -> Iterator[DovecotServer]:
    """A running dovecot for one test."""
    with DovecotServer(tmp_path / "dovecot") as server:
        yield server
