"""The application under test in process: the demo tenant with a sensitive unit, settings on
the in-process bus, the API over ASGI with a helper that makes items and keys in the same
database, and a started Runtime.

`runtime` and `api` (the API sharing the runtime's bus) are fixtures a test module imports;
both use the module's own `settings` fixture."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from services.api import create_app
from shared.auth import Role, create_key
from shared.bus import Bus
from shared.contracts import ItemState
from shared.db import create_engine, session_factory, uow_factory
from shared.db.models import Item
from shared.runtime import Runtime
from shared.settings import DEMO_TENANT_DIR, Settings


def make_tenant(directory: Path) -> Path:
    """The demo tenant with the job centre marked sensitive."""
    shutil.copytree(DEMO_TENANT_DIR, directory)
    org = yaml.safe_load((directory / "org.yaml").read_text(encoding="utf-8"))
    for unit in org["units"]:
        if unit["id"] == "jobcenter":
            unit["sensitive"] = True
    (directory / "org.yaml").write_text(yaml.safe_dump(org, allow_unicode=True),
                                        encoding="utf-8")
    return directory


def app_settings(database_url: str, tmp_path: Path, **extra: Any) -> Settings:
    """Settings on the in-process bus with `make_tenant`'s tenant, both below `tmp_path`."""
    return Settings(data_dir=tmp_path / "data", database_url=database_url,
                    amqp_url="memory://", tenant_dir=make_tenant(tmp_path / "tenant"), **extra)


def demo_settings(database_url: str, tmp_path: Path, **extra: Any) -> Settings:
    """Settings on the in-process bus with the demo tenant as it ships."""
    return Settings(data_dir=tmp_path / "data", database_url=database_url,
                    amqp_url="memory://", tenant_dir=DEMO_TENANT_DIR, **extra)


class Api:
    """An in-process client plus helpers to make items and keys in the same database."""

    def __init__(self, client: httpx.AsyncClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.engine = create_engine(settings.db_url)
        self.uow = uow_factory(session_factory(self.engine))

    async def item(self, unit: str | None, state: ItemState = ItemState.DONE, *,
                   subject: str = "Parkering", raw_sha256: str | None = None) -> uuid.UUID:
        item_id = uuid.uuid4()
        async with self.uow() as uow:
            item = Item(id=item_id, correlation_id=uuid.uuid4(), channel="email",
                        mailbox="post", source_ref=f"acc-{item_id}", subject=subject,
                        sender="borger@example.dk", state=ItemState.CLASSIFIED.value,
                        entities=[], raw_sha256=raw_sha256)
            uow.session.add(item)
            await uow.session.flush()
            item.unit = unit
            item.decision = {"outcome": "triage" if state == ItemState.TRIAGE else "routed",
                             "unit": unit, "receipt": False, "reasons": ["test"]}
            uow.transition(item, state, reason="test", producer="test")
            await uow.commit()
        return item_id

    async def key(self, role: Role, *, units: tuple[str, ...] = (),
                  forms: tuple[str, ...] = (), name: str = "TBN") -> dict[str, str]:
        async with self.uow() as uow:
            issued = await create_key(uow.session, name=name, role=role, units=units,
                                      forms=forms)
            await uow.commit()
        return {"Authorization": f"Bearer {issued.key}"}

    async def close(self) -> None:
        await self.engine.dispose()


A = TypeVar("A", bound=Api)


@asynccontextmanager
async def serve_api(helper: type[A], settings: Settings, *,
                    bus: Bus | None = None) -> AsyncIterator[A]:
    """The API started (lifespan) with an ASGI client, wrapped in `helper` (Api or a subclass)."""
    app = create_app(settings, bus=bus)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        api = helper(client, settings)
        try:
            yield api
        finally:
            await api.close()


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Runtime]:
    runtime = Runtime(settings)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


@pytest.fixture(name="runtime")
async def runtime_fixture(settings: Settings) -> AsyncIterator[Runtime]:
    async with running(settings) as runtime:
        yield runtime


@pytest.fixture(name="api")
async def runtime_api(settings: Settings, runtime: Runtime) -> AsyncIterator[Api]:
    async with serve_api(Api, settings, bus=runtime.bus) as api:
        yield api
