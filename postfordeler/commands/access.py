"""`postfordeler apikey create|list|revoke`: API keys for people and systems.

The key is printed once at creation; the database keeps only its hash.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared import audit
from shared.auth import Role, create_key, revoke_key
from shared.db import create_engine, session_factory
from shared.db.models import ApiKey
from shared.errors import InvalidInput
from shared.settings import Settings

app = typer.Typer(help="API keys (administrators, clerks, auditors, form clients).",
                  no_args_is_help=True)


def _sessions(settings: Settings) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.db_url)
    return engine, session_factory(engine)


@app.command("create")
def create(
    role: Annotated[Role, typer.Option(help="administrator, clerk, auditor or form_client.")],
    name: Annotated[str, typer.Option(help="Clerk initials or the system's name.")],
    unit: Annotated[list[str] | None, typer.Option(help="A clerk's unit (repeatable).")] = None,
    form: Annotated[list[str] | None, typer.Option(help="A form client's form (repeatable).")
                    ] = None,
) -> None:
    """Issue a key and print it (this is the only time it is shown)."""
    settings = Settings()
    known = set(_tenant_units(settings))
    unknown = sorted(set(unit or ()) - known) if known else []
    if unknown:
        raise typer.BadParameter(f"unknown unit(s): {', '.join(unknown)}", param_hint="--unit")

    async def run() -> str:
        engine, sessions = _sessions(settings)
        try:
            async with sessions() as s:
                issued = await create_key(s, name=name, role=role, units=unit or (),
                                          forms=form or ())
                await audit.append(s, action="apikey_created", actor="cli", details={
                    "key_id": str(issued.id), "prefix": issued.prefix, "name": name,
                    "role": role.value, "units": sorted(unit or ()),
                    "forms": sorted(form or ())})
                await s.commit()
                return issued.key
        finally:
            await engine.dispose()

    try:
        key = asyncio.run(run())
    except InvalidInput as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(key)
    typer.echo("Store this key now: it cannot be shown again.", err=True)


def _tenant_units(settings: Settings) -> list[str]:
    from shared.tenant import Tenant

    tenant = Tenant(settings.tenant_dir)
    return [*tenant.units, tenant.fallback_unit]


@app.command("list")
def list_keys() -> None:
    """Keys with their role and scope (never the key itself)."""

    async def run() -> list[ApiKey]:
        engine, sessions = _sessions(Settings())
        try:
            async with sessions() as s:
                return list((await s.execute(select(ApiKey).order_by(ApiKey.created_at))
                             ).scalars())
        finally:
            await engine.dispose()

    for k in asyncio.run(run()):
        scope = ",".join(k.units or k.forms or []) or "-"
        state = f"revoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else "active"
        typer.echo(f"{k.id}  pf_{k.prefix}_…  {k.role:<13} {k.name:<20} {scope:<30} {state}")


@app.command("revoke")
def revoke(key: Annotated[str, typer.Argument(help="The key's id or its prefix.")]) -> None:
    """Revoke a key at once."""
    prefix = key.split("_")[1] if key.startswith("pf_") and key.count("_") >= 1 else key

    async def run() -> bool:
        engine, sessions = _sessions(Settings())
        try:
            async with sessions() as s:
                done = await revoke_key(s, prefix)
                if done:
                    await audit.append(s, action="apikey_revoked", actor="cli",
                                       details={"key": prefix})
                await s.commit()
                return done
        finally:
            await engine.dispose()

    if not asyncio.run(run()):
        typer.echo("no such active key", err=True)
        raise typer.Exit(1)
    typer.echo("revoked")
