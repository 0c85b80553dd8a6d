"""`postfordeler demo`: the whole pipeline in one process on the embedded defaults."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import func, select

from postfordeler.demo.mailbox import demo_messages, write_maildir
from postfordeler.processes import WORKERS, start_workers
from shared.contracts import TERMINAL_STATES
from shared.db import migrate
from shared.db.models import Item, Receipt, SourceMessage
from shared.logging import configure
from shared.runtime import Runtime
from shared.settings import DEMO_TENANT_DIR, Settings


async def run_demo(data_dir: Path, timeout: float) -> int:
    console = Console()
    # The demo always starts from an empty mailbox and database.
    await asyncio.to_thread(shutil.rmtree, data_dir, ignore_errors=True)
    settings = Settings(data_dir=data_dir, tenant_dir=DEMO_TENANT_DIR,
                        amqp_url="memory://", poll_interval=1.0,
                        log_level=os.environ.get("POSTFORDELER_LOG_LEVEL", "WARNING"))
    configure(settings.log_level, settings.log_format)
    await asyncio.to_thread(migrate, settings.db_url)
    messages = demo_messages()
    write_maildir(data_dir / "demo-maildir", messages)
    expected_items = sum(m.expect_state != "duplicate" for m in messages)
    console.print(f"[bold]Postfordeler demo[/]: {len(messages)} messages in the demo mailbox "
                  f"({data_dir / 'demo-maildir'}), SQLite at {settings.db_url.split('///')[-1]}")
    runtime = Runtime(settings)
    await runtime.start()
    try:
        from services.journal import seed_cases

        await seed_cases(runtime)
        await start_workers(runtime, WORKERS)
        runtime.start_housekeeping()
        done = await _wait(runtime, expected_items, timeout, console)
        await _report(runtime, console)
    finally:
        await runtime.stop()
    console.print(f"Receipts were written to {settings.outbox_path} (no SMTP server configured).")
    console.print("Explore: POSTFORDELER_DATA_DIR=var/demo postfordeler run all, make a key with "
                  "POSTFORDELER_DATA_DIR=var/demo postfordeler apikey create --role auditor "
                  "--name demo, then GET http://127.0.0.1:8080/api/v1/items with "
                  "'Authorization: Bearer <key>'")
    return 0 if done else 1


async def _terminal_count(runtime: Runtime) -> int:
    async with runtime.uow() as uow:
        return int((await uow.session.execute(
            select(func.count()).select_from(Item)
            .where(Item.state.in_([s.value for s in TERMINAL_STATES])))).scalar_one())


async def _wait(runtime: Runtime, expected: int, timeout: float, console: Console) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("Processing items", total=expected)
        while loop.time() < deadline:
            finished = await _terminal_count(runtime)
            progress.update(task, completed=finished)
            if finished >= expected:
                return True
            await asyncio.sleep(0.2)
    console.print(f"[red]timed out after {timeout:.0f}s[/]")
    return False


async def _report(runtime: Runtime, console: Console) -> None:
    async with runtime.uow() as uow:
        items = (await uow.session.execute(select(Item).order_by(Item.created_at))).scalars().all()
        receipts = set((await uow.session.execute(select(Receipt.item_id).where(
            Receipt.status == "sent"))).scalars().all())
        duplicates = (await uow.session.execute(select(func.count()).select_from(SourceMessage)
                                                .where(SourceMessage.duplicate))).scalar_one()
    table = Table(title="What happened to each item")
    for col in ("#", "subject", "state", "unit", "case", "receipt", "why"):
        table.add_column(col, overflow="fold")
    for n, it in enumerate(items, 1):
        why = it.failure_reason or "; ".join((it.decision or {}).get("reasons", []))
        table.add_row(str(n), (it.subject or "")[:40], it.state, it.unit or "",
                      it.case_number or "", "yes" if it.id in receipts else "", why[:70])
    console.print(table)
    states: dict[str, int] = {}
    for it in items:
        states[it.state] = states.get(it.state, 0) + 1
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(states.items()))
    console.print(f"{len(items)} items ({summary}); {duplicates} duplicate message(s) "
                  f"recognised; {len(receipts)} receipts sent.")
