"""The `postfordeler` command."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from postfordeler.commands import access, classifier, deadletter, extract, retention, rules
from shared.settings import Settings

app = typer.Typer(help="Postfordeler: distributes a municipality's mail, scans and forms.",
                  no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(audit_app, name="audit")
app.add_typer(access.app, name="apikey")
app.add_typer(deadletter.app, name="deadletter")
app.add_typer(retention.app, name="retention")
app.add_typer(rules.app, name="rules")
app.command("extract")(extract.extract)
classifier.register(app)  # train, evaluate, kle

def _settings(**overrides: object) -> Settings:
    from shared.logging import configure

    settings = Settings(**overrides)  # type: ignore[arg-type]
    configure(settings.log_level, settings.log_format)
    return settings


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the database schema (Alembic)."""
    from shared.db import migrate

    settings = _settings()
    migrate(settings.db_url)
    typer.echo("database schema is up to date")


@app.command("run")
def run(
    services: Annotated[list[str], typer.Argument(
        help="all, or one or more of: ingest classifier router journal api")],
    migrate_first: Annotated[bool, typer.Option("--migrate/--no-migrate",
                                                help="Upgrade the schema first.")] = True,
) -> None:
    """Run services in this process until interrupted."""
    from postfordeler.processes import SERVICES, serve
    from shared.db import migrate

    names = SERVICES if services == ["all"] else tuple(services)
    unknown = sorted(set(names) - set(SERVICES))
    if unknown:
        raise typer.BadParameter(f"unknown service(s): {', '.join(unknown)}")
    settings = _settings()
    if settings.in_process_bus and set(names) != set(SERVICES):
        raise typer.BadParameter(
            "the in-process bus (memory://) connects services in one process only: "
            "run `postfordeler run all`, or set POSTFORDELER_AMQP_URL to RabbitMQ")
    if migrate_first:
        migrate(settings.db_url)
    asyncio.run(serve(settings, names))


@app.command("demo")
def demo(
    data_dir: Annotated[Path, typer.Option(help="Where the demo keeps its state.")] = Path(
        "var/demo"),
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every item.")] = 300.0,
) -> None:
    """Process the bundled demo mailbox on the embedded defaults and show each item's fate."""
    from postfordeler.demo.run import run_demo

    raise typer.Exit(asyncio.run(run_demo(data_dir, timeout)))


@app.command("healthcheck")
def healthcheck() -> None:
    """Exit 0 when the API or worker health endpoint here says it is live."""
    import urllib.request

    settings = Settings()
    host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::") else settings.api_host  # noqa: S104
    for port in filter(None, (settings.api_port, settings.metrics_port)):
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/health/live", timeout=3) as r:
                if r.status == 200:
                    raise typer.Exit(0)
        except OSError:
            continue
    typer.echo("not live", err=True)
    raise typer.Exit(1)


@app.command("reconcile")
def reconcile() -> None:
    """Re-publish items stuck in a non-terminal state (one pass)."""
    from shared.runtime import Runtime

    async def once() -> int:
        runtime = Runtime(_settings())
        await runtime.start()
        try:
            from shared.reconciler import Reconciler

            rec = Reconciler(runtime.uow, runtime.relay, runtime.settings.stuck_after,
                             runtime.settings.reconcile_max_attempts)
            return await rec.run_once()
        finally:
            await runtime.stop()

    typer.echo(f"{asyncio.run(once())} item(s) re-published or failed")


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the audit log's hash chain; exits 1 when it is broken."""
    from services.api import verify_audit

    result = asyncio.run(verify_audit(_settings()))
    typer.echo(result.message)
    raise typer.Exit(0 if result.ok else 1)
