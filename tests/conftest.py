"""Shared fixtures. Tests that need an outside service skip with a clear message when it is not
reachable on a developer's machine, and fail under CI=true, where everything must run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

CI = os.environ.get("CI", "").lower() == "true"
RABBIT_URL = os.environ.get("POSTFORDELER_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG_ADMIN_DSN = os.environ.get("POSTFORDELER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
SAMPLE_DATA = Path(os.environ.get(
    "POSTFORDELER_SAMPLE_DATA",
    Path(__file__).resolve().parents[2] / "shared" / "data" / "eksempelby"))
CORPUS = Path(os.environ.get(
    "POSTFORDELER_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus"))


def unavailable(what: str) -> None:
    """Skip (laptop) or fail (CI) because `what` is not available."""
    if CI:
        pytest.fail(f"{what} is required under CI=true but is not available", pytrace=False)
    pytest.skip(f"{what} is not available here")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def rabbit_url() -> str:
    if not port_open("127.0.0.1", 5672):
        unavailable("RabbitMQ on 127.0.0.1:5672")
    return RABBIT_URL


def _psql(sql: str) -> None:
    subprocess.run(["psql", PG_ADMIN_DSN, "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True,
                   capture_output=True)


@contextlib.contextmanager
def new_database(prefix: str = "pf_test") -> Iterator[str]:
    """A fresh, migrated PostgreSQL database, dropped afterwards."""
    if not port_open("127.0.0.1", 5432):
        unavailable("PostgreSQL on 127.0.0.1:5432")
    from shared.db import migrate

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    _psql(f"CREATE DATABASE {name}")
    try:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        migrate(url)
        yield url
    finally:
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def own_database(request: pytest.FixtureRequest, prefix: str) -> Iterator[str]:
    """For a fixture with params ["sqlite", "postgres"]: a database of the test's own, its
    SQLite file or a fresh PostgreSQL one (for tests that act on every row they find)."""
    if request.param == "sqlite":
        yield str(request.getfixturevalue("sqlite_url"))
        return
    with new_database(prefix) as url:
        yield url


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL database shared by this test session (tests use random ids)."""
    with new_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    from shared.db import migrate

    url = f"sqlite+aiosqlite:///{tmp_path / 'postfordeler.db'}"
    migrate(url)
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Runs a test on both databases."""
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[object]:
    from shared.db import create_engine

    eng = create_engine(db_url)
    yield eng
    await eng.dispose()


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0,
             interval: float = 0.1) -> None:
    """Poll a synchronous predicate until true or fail after `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


async def async_wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float = 30.0,
                         interval: float = 0.1) -> None:
    """Poll an async predicate until true or fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await predicate():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
