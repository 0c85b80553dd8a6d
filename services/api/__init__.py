"""The HTTP API: health, Prometheus metrics, items and the audit journal (read-only for now).

`create_app(settings)` connects nothing: the engine is made in the lifespan. Access control is
a dependency hook (`deps.current_principal`) on every /api route.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from sqlalchemy import func, select, text

from shared import audit
from shared.audit import VerifyResult
from shared.contracts import ItemState
from shared.db import create_engine, session_factory
from shared.db.models import Item
from shared.settings import Settings

from .audit import router as audit_router
from .deps import ANONYMOUS, Principal, current_principal
from .routes import router
from .schemas import Health

__all__ = ["ANONYMOUS", "Principal", "create_app", "current_principal", "verify_audit",
           "verify_command"]

ITEMS_BY_STATE = Gauge("postfordeler_items", "Items per state (from the database at scrape)",
                       ["state"])


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.db_url)
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(title="Postfordeler", version="1", lifespan=lifespan)
    app.state.settings = settings
    app.include_router(router)
    app.include_router(audit_router)  # audit entries, CSV, CPR query, receipt status

    @app.get("/health/live", response_model=Health)
    async def live() -> Health:
        return Health(status="ok")

    @app.get("/health/ready", response_model=Health)
    async def ready(request: Request) -> Response:
        checks = {"database": await _database_ok(request), "bus": await _bus_ok(settings)}
        ok = all(v in ("ok", "in-process") for v in checks.values())
        body = Health(status="ok" if ok else "unavailable", checks=checks)
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        async with request.app.state.sessions() as s:
            rows = (await s.execute(select(Item.state, func.count()).group_by(Item.state))).all()
        counts = {state: int(n) for state, n in rows}
        for state in ItemState:
            ITEMS_BY_STATE.labels(state.value).set(counts.get(state.value, 0))
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


async def _database_ok(request: Request) -> str:
    try:
        async with request.app.state.engine.connect() as conn:
            await asyncio.wait_for(conn.execute(text("SELECT 1")), timeout=5)
        return "ok"
    except Exception as exc:  # any failure means not ready; the reason goes to the body
        return f"error: {type(exc).__name__}"


async def _bus_ok(settings: Settings) -> str:
    if settings.in_process_bus:
        return "in-process"
    url = urlsplit(settings.amqp_url.get_secret_value())
    port = url.port or (5671 if url.scheme == "amqps" else 5672)
    try:
        # A TCP handshake with the broker; a full AMQP login per probe would be wasteful.
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(url.hostname or "127.0.0.1", port), timeout=3)
        writer.close()
        await writer.wait_closed()
        return "ok"
    except (OSError, TimeoutError) as exc:
        return f"error: {type(exc).__name__}"


async def verify_audit(settings: Settings) -> VerifyResult:
    """`postfordeler audit verify`: check the audit chain in the configured database."""
    engine = create_engine(settings.db_url)
    try:
        async with session_factory(engine)() as s:
            return await audit.verify(s)
    finally:
        await engine.dispose()


verify_command = verify_audit
