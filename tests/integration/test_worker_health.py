"""A worker process's own health and metrics endpoint, as container probes use it."""

from __future__ import annotations

from pathlib import Path

import httpx

from postfordeler.health import serve_health
from shared.runtime import Runtime
from shared.settings import Settings
from tests.conftest import free_port


async def test_live_ready_and_metrics(tmp_path: Path, sqlite_url: str) -> None:
    runtime = Runtime(Settings(data_dir=tmp_path, database_url=sqlite_url))  # type: ignore[arg-type]
    await runtime.start()
    port = free_port()
    server = await serve_health(runtime, "127.0.0.1", port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/health/live")).json() == {"status": "ok"}
            assert (await http.get("/health/ready")).status_code == 200
            metrics = await http.get("/metrics")
            assert "postfordeler_stage_messages_total" in metrics.text
            assert (await http.get("/nope")).status_code == 404
    finally:
        server.close()
        await runtime.stop()


async def test_not_ready_when_the_database_is_gone(tmp_path: Path) -> None:
    nobody = free_port()  # nothing listens there
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{nobody}/postfordeler"
    runtime = Runtime(Settings(data_dir=tmp_path, database_url=url))  # type: ignore[arg-type]
    port = free_port()
    server = await serve_health(runtime, "127.0.0.1", port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            r = await http.get("/health/ready")
            assert r.status_code == 503
            assert r.json()["problem"].startswith("database:")
    finally:
        server.close()
        await runtime.engine.dispose()
