"""A small HTTP endpoint for worker processes (the API has its own): `/health/live`,
`/health/ready` and `/metrics`, so container probes and Prometheus reach every process.

Ready means the database answers and, for RabbitMQ, the bus connection is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from shared.runtime import Runtime


async def serve_health(runtime: Runtime, host: str, port: int) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            path = request.decode("latin-1").split(" ")[1] if request.count(b" ") >= 2 else ""
            status, ctype, body = await _answer(runtime, path)
            writer.write(f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                         + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port)


async def _answer(runtime: Runtime, path: str) -> tuple[str, str, bytes]:
    if path == "/metrics":
        return "200 OK", CONTENT_TYPE_LATEST, generate_latest()
    if path == "/health/live":
        return "200 OK", "application/json", b'{"status":"ok"}'
    if path == "/health/ready":
        problems = await _problems(runtime)
        if problems:
            body = json.dumps({"status": "unavailable", "problem": problems}).encode()
            return "503 Service Unavailable", "application/json", body
        return "200 OK", "application/json", b'{"status":"ok"}'
    return "404 Not Found", "text/plain", b"not found"


async def _problems(runtime: Runtime) -> str:
    try:
        async with runtime.engine.connect() as conn:
            await asyncio.wait_for(conn.execute(text("SELECT 1")), timeout=5)
    except Exception as exc:  # not ready, whatever the reason
        return f"database: {type(exc).__name__}"
    if not await runtime.bus.healthy():
        return "bus: not connected"
    return ""
