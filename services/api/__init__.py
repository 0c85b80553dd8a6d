"""The HTTP API: health, Prometheus metrics, items and the audit journal (read-only for now).

`create_app(settings)` connects nothing: the engine is made in the lifespan. Access control is
a dependency hook (`deps.current_principal`) on every /api route.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import structlog
from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from sqlalchemy import func, select, text

from shared.audit import VerifyResult, verify
from shared.blobs import FileBlobStore
from shared.bus import Bus, RetryPolicy, make_bus
from shared.contracts import ItemEvent, ItemState
from shared.db import create_engine, session_factory
from shared.db.models import Item
from shared.settings import Settings
from shared.tenant import Tenant

from . import auth, clerk, deadletters, forms, mailboxes, rules, ui
from .audit import router as audit_router
from .deps import ANONYMOUS, Principal, Role, current_principal, require
from .routes import router
from .schemas import REFUSALS, Health

log = structlog.get_logger(__name__)

__all__ = ["ANONYMOUS", "Principal", "create_app", "current_principal", "require",
           "verify_audit", "verify_command"]

ITEMS_BY_STATE = Gauge("postfordeler_items", "Items per state (from the database at scrape)",
                       ["state"])
DEAD_LETTERS = Gauge("postfordeler_dead_letters", "Messages in each consumer's dead-letter "
                     "queue (at scrape)", ["consumer"])


def create_app(settings: Settings, *, bus: Bus | None = None) -> FastAPI:
    """The API. `bus` is the process's bus when the API runs with the workers (the in-process
    bus must be shared); otherwise the API makes its own, connecting on first use."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.db_url)
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        app.state.tenant = Tenant(settings.tenant_dir)
        app.state.blobs = FileBlobStore(settings.blobs_path)
        app.state.oidc = auth.OidcVerifier(settings) if settings.oidc_issuer else None
        own_bus = bus is None
        app.state.bus = bus or make_bus(
            settings.amqp_url.get_secret_value(), exchange=settings.exchange,
            policy=RetryPolicy(settings.retry_max_attempts, settings.retry_base_delay,
                               settings.retry_max_delay), delivery_limit=settings.delivery_limit)
        app.state.dead_letters = deadletters.store_for(settings, app.state.bus)
        app.state.publish = lambda events: _publish(app.state.bus, events)
        try:
            yield
        finally:
            await app.state.dead_letters.close()
            if own_bus:
                await app.state.bus.close()
            await engine.dispose()

    app = FastAPI(title="Postfordeler", version="1", lifespan=lifespan,
                  description="Routing, delivery, clerk work, audit and operations. Every "
                              "/api route needs `Authorization: Bearer <API key or OIDC token>`.")
    app.state.settings = settings
    app.include_router(router)
    # The audit log spans every unit, sensitive ones included: auditors only.
    app.include_router(audit_router,  # audit entries, CSV, CPR query, receipt status
                       responses=REFUSALS, dependencies=[Depends(require(Role.AUDITOR))])
    app.include_router(clerk.router)
    app.include_router(auth.router)
    app.include_router(deadletters.router)
    app.include_router(mailboxes.router)  # /health/mailboxes
    app.include_router(rules.router)  # /api/v1/rules
    app.include_router(forms.router,  # /api/v1/forms/{form_id}/submissions
                       responses=REFUSALS)
    ui.install(app)  # the web interface, /ui

    @app.get("/health/live", response_model=Health)
    async def live() -> Health:
        return Health(status="ok")

    @app.get("/health/ready", response_model=Health)
    async def ready(request: Request) -> Response:
        checks = {"database": await _database_ok(request), "bus": await _bus_ok(settings)}
        ok = all(v in ("ok", "in-process") for v in checks.values())
        body = Health(status="ok" if ok else "unavailable", checks=checks)
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    @app.get("/metrics", response_class=Response, responses={200: {
        "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
        "description": "Prometheus text exposition format."}})
    async def metrics(request: Request) -> Response:
        async with request.app.state.sessions() as s:
            rows = (await s.execute(select(Item.state, func.count()).group_by(Item.state))).all()
        counts = {state: int(n) for state, n in rows}
        for state in ItemState:
            ITEMS_BY_STATE.labels(state.value).set(counts.get(state.value, 0))
        await _dead_letter_depth(request)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


async def _publish(bus: Bus, events: list[ItemEvent]) -> None:
    """Publish what a request committed. Best effort: the outbox sweep of the worker
    processes publishes anything this misses (broker down) a few seconds later."""
    try:
        await asyncio.wait_for(asyncio.gather(*(bus.publish(e) for e in events)), timeout=10)
    except Exception as exc:
        log.warning("publish after commit failed; the outbox sweep will publish",
                    error=type(exc).__name__)


async def _dead_letter_depth(request: Request) -> None:
    bus: Bus = request.app.state.bus
    for consumer in deadletters.consumers_of(bus, request.app.state.settings):
        try:
            depth = await asyncio.wait_for(bus.dead_letter_count(consumer), timeout=5)
        except Exception:  # broker down: keep the last value; readiness reports the outage
            return
        DEAD_LETTERS.labels(consumer).set(depth)


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
            # the name `audit` in this package is the services.api.audit submodule
            return await verify(s)
    finally:
        await engine.dispose()


verify_command = verify_audit
