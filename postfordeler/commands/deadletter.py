"""`postfordeler deadletter list|show|replay`: what the consumers gave up on (RabbitMQ).

The in-process bus (memory://) keeps its dead letters inside the running process; there
they are reached through the API (`/api/v1/deadletters`) instead.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Annotated

import typer

from shared import audit
from shared.db import create_engine, session_factory
from shared.settings import Settings

if TYPE_CHECKING:  # the API package is imported only when a command runs
    from services.api.deadletters import DeadLetter, RabbitDeadLetters

app = typer.Typer(help="Dead letters: list, show and replay.", no_args_is_help=True)


def _store(settings: Settings) -> RabbitDeadLetters:
    from services.api.deadletters import RabbitDeadLetters

    if settings.in_process_bus:
        typer.echo("the in-process bus keeps dead letters in the running process: use "
                   "GET /api/v1/deadletters there", err=True)
        raise typer.Exit(2)
    return RabbitDeadLetters(settings.amqp_url.get_secret_value(), settings.exchange)


def _consumers(consumer: str | None) -> tuple[str, ...]:
    from shared.bus import CONSUMERS

    return (consumer,) if consumer else CONSUMERS


async def _list(settings: Settings, consumers: tuple[str, ...]) -> list[DeadLetter]:
    store = _store(settings)
    try:
        found: list[DeadLetter] = []
        for name in consumers:
            found += await store.list(name)
        return found
    finally:
        await store.close()


@app.command("list")
def list_(consumer: Annotated[str | None, typer.Option(help="Only this consumer.")] = None
          ) -> None:
    """One line per dead letter: consumer, message id, event, item, reason."""
    letters = asyncio.run(_list(Settings(), _consumers(consumer)))
    for letter in letters:
        s = letter.summary()
        typer.echo(f"{s.consumer:<17} {s.message_id:<36} {s.event_type or '?':<16} "
                   f"{s.item_id or '-'}  {s.reason}")
    typer.echo(f"{len(letters)} dead letter(s)", err=True)


@app.command("show")
def show(consumer: str, message_id: str) -> None:
    """The dead letter as JSON (CPR entity values masked)."""
    for letter in asyncio.run(_list(Settings(), (consumer,))):
        if letter.message_id == message_id:
            typer.echo(json.dumps(letter.detail().model_dump(mode="json"), indent=2,
                                  ensure_ascii=False))
            return
    typer.echo("no such dead letter", err=True)
    raise typer.Exit(1)


@app.command("replay")
def replay(
    consumer: str,
    message_ids: Annotated[list[str] | None, typer.Argument(help="Message ids.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
) -> None:
    """Put dead letters back on the consumer's queue (after fixing the cause)."""
    if not message_ids and not all_:
        raise typer.BadParameter("name message ids, or use --all")
    settings = Settings()

    async def run() -> int:
        store = _store(settings)
        try:
            done = await store.replay(consumer, set(message_ids) if message_ids else None)
        finally:
            await store.close()
        engine = create_engine(settings.db_url)
        try:
            async with session_factory(engine)() as s:
                await audit.append(s, action="deadletter_replayed", actor="cli", details={
                    "consumer": consumer, "message_ids": sorted(message_ids or []),
                    "replayed": done})
                await s.commit()
        finally:
            await engine.dispose()
        return done

    done = asyncio.run(run())
    typer.echo(f"{done} dead letter(s) replayed")
    if message_ids and done == 0:
        raise typer.Exit(1)
