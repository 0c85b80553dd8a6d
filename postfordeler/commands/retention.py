"""`postfordeler retention run [--dry-run]`: delete message content past its retention period
(POSTFORDELER_RETENTION_DAYS); audit entries and the items' state and history stay."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from shared.settings import Settings

app = typer.Typer(help="Deletion of message content after the retention period.",
                  no_args_is_help=True)


@app.command("run")
def run(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be deleted.")
                       ] = False,
    days: Annotated[int | None, typer.Option(
        min=1, help="Retention in days; default POSTFORDELER_RETENTION_DAYS.")] = None,
) -> None:
    """Delete the content (blobs, subject, entities, events) of items finished more than the
    retention period ago. The journal service runs this every POSTFORDELER_RETENTION_INTERVAL
    seconds when POSTFORDELER_RETENTION_DAYS is set."""
    from services.journal.retention import RetentionJob
    from shared.blobs import FileBlobStore
    from shared.db import create_engine, session_factory, uow_factory
    from shared.logging import configure

    settings = Settings()
    configure(settings.log_level, settings.log_format)
    days = days or settings.retention_days
    if days is None:
        typer.echo("no retention period: set POSTFORDELER_RETENTION_DAYS or pass --days", err=True)
        raise typer.Exit(2)

    async def go() -> None:
        engine = create_engine(settings.db_url)
        try:
            job = RetentionJob(uow_factory(session_factory(engine)),
                               FileBlobStore(settings.blobs_path), days)
            report = await job.run(dry_run=dry_run)
        finally:
            await engine.dispose()
        verb = "would delete" if dry_run else "deleted"
        typer.echo(f"retention {days} days: {verb} the content of {report.items} item(s), "
                   f"{report.blobs_deleted} blob(s), {report.bytes_freed} bytes; "
                   f"{report.blobs_kept} blob(s) kept (still referred to)")

    asyncio.run(go())
