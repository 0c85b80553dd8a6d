"""Running services: one per process (scaled out over RabbitMQ and PostgreSQL) or all in one."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from types import ModuleType

import structlog

from shared.bus import Bus
from shared.runtime import Runtime
from shared.settings import Settings

log = structlog.get_logger(__name__)

WORKERS = ("ingest", "classifier", "router", "journal", "delivery")
SERVICES = (*WORKERS, "api")


def service_module(name: str) -> ModuleType:
    import importlib

    return importlib.import_module(f"services.{name}")


async def start_workers(runtime: Runtime, names: tuple[str, ...]) -> None:
    # Downstream first, so that nothing the ingest publishes finds its consumer missing.
    for name in reversed(WORKERS):
        if name in names:
            start: Callable[[Runtime], Awaitable[None]] = service_module(name).start
            await start(runtime)


async def serve(settings: Settings, names: tuple[str, ...]) -> None:
    """Run the services `names` in this process until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    runtime = Runtime(settings)
    await runtime.start()
    api_task: asyncio.Task[None] | None = None
    health = None
    if settings.metrics_port and "api" not in names:
        from postfordeler.health import serve_health

        health = await serve_health(runtime, settings.api_host, settings.metrics_port)
    try:
        workers = tuple(n for n in names if n in WORKERS)
        await start_workers(runtime, workers)
        if workers:
            runtime.start_housekeeping(reconcile="ingest" in workers)
        if "api" in names:
            api_task = asyncio.create_task(_serve_api(settings, stop, runtime.bus))
        log.info("services started", services=list(names), bus="memory"
                 if settings.in_process_bus else "rabbitmq")
        await stop.wait()
    finally:
        log.info("stopping", services=list(names))
        if health is not None:
            health.close()
        if api_task is not None:
            await api_task
        await runtime.stop()


async def _serve_api(settings: Settings, stop: asyncio.Event, bus: Bus) -> None:
    import uvicorn

    from services.api import create_app

    class _Server(uvicorn.Server):
        # This process's own handlers stop every service, the API included.
        def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
            return contextlib.nullcontext()

    server = _Server(uvicorn.Config(create_app(settings, bus=bus), host=settings.api_host,
                                    port=settings.api_port, log_config=None, access_log=False))
    task = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await task
