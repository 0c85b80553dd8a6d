"""`postfordeler rules import FILE | export | history`: the routing rules in the database as
YAML. An import is validated (fields, regular expressions, units and clerks of org.yaml) and
saved as a new version with an audit entry; the router picks it up without a restart."""

from __future__ import annotations

import asyncio
import getpass
from pathlib import Path
from typing import Annotated

import typer

from shared.settings import Settings

app = typer.Typer(help="Routing rules (stored in the database with their history).",
                  no_args_is_help=True)


def _settings() -> Settings:
    from shared.logging import configure

    settings = Settings()
    configure(settings.log_level, settings.log_format)
    return settings


@app.command("import")
def import_rules(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="rules.yaml")],
    comment: Annotated[str, typer.Option(help="Why the rules changed (kept in history).")] = "",
    author: Annotated[str | None, typer.Option(help="Who (default: cli:<login>).")] = None,
) -> None:
    """Validate FILE and make it the active rule set (a new version)."""
    from shared import audit
    from shared.db import create_engine, session_factory
    from shared.errors import ConfigurationError
    from shared.receipt_templates import named_receipt_templates
    from shared.rules import parse_yaml, store
    from shared.rules.replay import Organisation
    from shared.tenant import Tenant

    settings = _settings()
    who = author or f"cli:{getpass.getuser()}"
    try:
        ruleset = parse_yaml(file.read_text(encoding="utf-8"), str(file))
        ruleset.check(Organisation.of(Tenant(settings.tenant_dir)).clerks_by_unit(), str(file),
                      receipt_templates=named_receipt_templates(settings.tenant_dir))
    except ConfigurationError as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(2) from None

    async def go() -> int:
        engine = create_engine(settings.db_url)
        try:
            async with session_factory(engine)() as s:
                before = await store.get(s)
                row = await store.save(s, ruleset, author=who, comment=comment)
                changes = store.diff(before.document if before else {}, row.document)
                await audit.append(s, action="rules_imported", actor=who, details={
                    "version": row.version, "comment": comment, "file": file.name,
                    "changes": [c.words() for c in changes][:200]})
                await s.commit()
                return row.version
        finally:
            await engine.dispose()

    version = asyncio.run(go())
    typer.echo(f"imported {len(ruleset.rules)} rule(s) from {file} as version {version}")


@app.command("export")
def export_rules(
    version: Annotated[int | None, typer.Option(help="A past version (default: active).")
                       ] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write to a file.")
                      ] = None,
) -> None:
    """Print the active rule set (or a past version) as YAML; the tenant's rules.yaml while
    the database holds none."""
    from shared.db import create_engine, session_factory
    from shared.rules import RuleSet, dump_yaml, load_yaml, store
    from shared.tenant import Tenant

    settings = _settings()

    async def go() -> tuple[int | None, RuleSet]:
        engine = create_engine(settings.db_url)
        try:
            async with session_factory(engine)() as s:
                row = await store.get(s, version)
        finally:
            await engine.dispose()
        if row is None and version is not None:
            typer.echo(f"no version {version}", err=True)
            raise typer.Exit(1)
        if row is None:
            return None, load_yaml(Tenant(settings.tenant_dir).rules_path())
        return row.version, RuleSet.parse(row.document, f"version {row.version}")

    found, ruleset = asyncio.run(go())
    head = (f"# Postfordeler routing rules, version {found}\n" if found is not None
            else "# Postfordeler routing rules from the tenant's rules.yaml (none stored)\n")
    text = head + dump_yaml(ruleset)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}")


@app.command("history")
def history(limit: Annotated[int, typer.Option(min=1)] = 20,
            rule: Annotated[str | None, typer.Option(help="Only versions changing it.")] = None,
            ) -> None:
    """Versions, newest first: who, when, why and what changed."""
    from shared.db import create_engine, session_factory
    from shared.rules import store

    settings = _settings()

    async def go() -> None:
        engine = create_engine(settings.db_url)
        try:
            async with session_factory(engine)() as s:
                for row, changes in await store.history(s, limit=limit, rule=rule):
                    typer.echo(f"version {row.version}  {row.created_at:%Y-%m-%d %H:%M}  "
                               f"{row.author}  {row.comment}")
                    for c in changes:
                        typer.echo(f"  {c.words()}")
        finally:
            await engine.dispose()

    asyncio.run(go())
