"""Pipeline benchmark: N synthetic plain-text mails through the services as separate processes
on RabbitMQ and PostgreSQL, compared with the raw publish/consume rate of the same broker.

    python bench/pipeline.py --n 2000

Reports items/s end to end, p50/p95 time from ingest to done, time per stage, and the machine.
The mails wait in a local Maildir, so ingest is not limited by an IMAP server; receipts go to
the pickup directory (no SMTP round trip). Uses a database and exchange of its own and removes
them afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import aio_pika
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from postfordeler.demo.mailbox import demo_messages, write_maildir  # noqa: E402
from shared.bus._rabbitmq import RabbitBus  # noqa: E402
from shared.contracts import TERMINAL_STATES  # noqa: E402
from shared.db import create_engine, migrate  # noqa: E402
from shared.db.models import Item, ItemTransition, Receipt  # noqa: E402
from shared.settings import DEMO_TENANT_DIR  # noqa: E402

STAGES = ("received", "extracted", "classified", "routed", "done")
CONSUMERS = ("extractor", "classifier", "router", "journal", "journal-receipts")


def machine() -> dict[str, object]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), platform.processor())
    mem = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), "0")
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(int(mem) / 2**20, 1),
            "python": platform.python_version(), "platform": platform.platform()}


async def raw_rabbit_rate(url: str, n: int) -> dict[str, float]:
    """Publish n persistent 43-byte messages with confirms (batches of 500), then consume them."""
    conn = await aio_pika.connect(url)
    try:
        ch = await conn.channel(publisher_confirms=True)
        q = await ch.declare_queue(f"bench-raw-{uuid.uuid4().hex[:8]}", durable=True,
                                   arguments={"x-queue-type": "quorum"})
        body = b"x" * 43
        t0 = time.perf_counter()
        for start in range(0, n, 500):
            await asyncio.gather(*(ch.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=q.name) for _ in range(min(500, n - start))))
        publish = n / (time.perf_counter() - t0)
        await ch.set_qos(prefetch_count=500)
        got = 0
        done = asyncio.Event()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal got
            await message.ack()
            got += 1
            if got >= n:
                done.set()

        t0 = time.perf_counter()
        await q.consume(on_message)
        await asyncio.wait_for(done.wait(), 300)
        consume = n / (time.perf_counter() - t0)
        await q.delete(if_unused=False, if_empty=False)
        return {"publish_per_s": round(publish), "consume_per_s": round(consume)}
    finally:
        await conn.close()


async def remove_topology(url: str, exchange: str) -> None:
    if not exchange:
        return
    bus = RabbitBus(url, exchange=exchange)
    await bus.connect()
    try:
        await bus.delete_topology(CONSUMERS)
    finally:
        await bus.close()


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def measure(db_url: str, n: int, receipts: int, timeout: float) -> dict[str, object]:
    engine = create_engine(db_url)
    terminal = [s.value for s in TERMINAL_STATES]
    try:
        deadline = time.monotonic() + timeout
        while True:
            async with engine.connect() as conn:
                states = (await conn.execute(select(Item.state))).scalars().all()
                sent = (await conn.execute(select(func.count()).select_from(Receipt).where(
                    Receipt.status == "sent"))).scalar_one()
            finished = sum(s in terminal for s in states)
            print(f"\r  {finished}/{n} items finished, {sent}/{receipts} receipts sent",
                  end="", file=sys.stderr, flush=True)
            if finished >= n and sent >= receipts:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"\ntimed out with {finished}/{n} items finished")
            await asyncio.sleep(1)
        print(file=sys.stderr)
        async with engine.connect() as conn:
            rows = (await conn.execute(select(ItemTransition.item_id, ItemTransition.to_state,
                                              ItemTransition.at))).all()
            sent_at = (await conn.execute(select(Receipt.sent_at).where(
                Receipt.status == "sent"))).scalars().all()
    finally:
        await engine.dispose()
    by_state = dict(Counter(states))
    per_item: dict[object, dict[str, float]] = {}
    for item_id, state, at in rows:
        per_item.setdefault(item_id, {})[state] = at.timestamp()
    complete = [t for t in per_item.values() if "received" in t and "done" in t]
    latencies = [t["done"] - t["received"] for t in complete]
    first = min(t["received"] for t in per_item.values())
    last = max(max(t.values()) for t in per_item.values())
    stage = {}
    for a, b in zip(STAGES, STAGES[1:], strict=False):
        spans = [t[b] - t[a] for t in complete if a in t and b in t]
        stage[f"{a}->{b}_p50_ms"] = round(pct(spans, 50) * 1000, 1)
    last_receipt = max((t.timestamp() for t in sent_at if t), default=last)
    return {"items": len(per_item), "states": by_state,
            "receipts_sent": len(sent_at),
            "receipts_per_s": round(len(sent_at) / (last_receipt - first), 1),
            "wall_s": round(last - first, 2),
            "items_per_s": round(len(per_item) / (last - first), 1),
            "p50_s": round(pct(latencies, 50), 3), "p95_s": round(pct(latencies, 95), 3),
            "stages": stage}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/")
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test",
                    help="admin DSN used to create and drop the benchmark database")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pf-bench-"))
    dbname = f"pf_bench_{uuid.uuid4().hex[:8]}"
    subprocess.run(["psql", args.pg, "-qc", f"CREATE DATABASE {dbname}"], check=True)
    db_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{dbname}"
    procs: list[subprocess.Popen[bytes]] = []
    env: dict[str, str] = {}
    try:
        migrate(db_url)
        tenant = work / "tenant"
        shutil.copytree(DEMO_TENANT_DIR, tenant)
        (tenant / "mailboxes.yaml").write_text(
            "mailboxes:\n  - name: post\n    kind: maildir\n    path: bench-maildir\n")
        # Plain-text mails that route (no malformed or duplicate ones: every mail is an item).
        messages = demo_messages(args.n + 5)[: args.n]  # the plain mails come first
        write_maildir(work / "data" / "bench-maildir", messages)
        env = {k: v for k, v in os.environ.items() if not k.startswith("POSTFORDELER_")}
        env.update({"POSTFORDELER_DATA_DIR": str(work / "data"),
                    "POSTFORDELER_DATABASE_URL": db_url, "POSTFORDELER_AMQP_URL": args.amqp,
                    "POSTFORDELER_EXCHANGE": f"pf-bench-{uuid.uuid4().hex[:8]}",
                    "POSTFORDELER_TENANT_DIR": str(tenant), "POSTFORDELER_POLL_INTERVAL": "0.2",
                    "POSTFORDELER_LOG_LEVEL": "WARNING"})
        for name in ("journal", "router", "classifier"):
            procs.append(subprocess.Popen([sys.executable, "-m", "postfordeler", "run", name,
                                           "--no-migrate"], env=env))
        time.sleep(3)
        procs.append(subprocess.Popen([sys.executable, "-m", "postfordeler", "run", "ingest",
                                       "--no-migrate"], env=env))
        print(f"pipeline: {len(messages)} mails, 4 service processes", file=sys.stderr)
        result = {"machine": machine(), "n": len(messages),
                  "pipeline": asyncio.run(measure(db_url, len(messages),
                                                  sum(m.receipt for m in messages),
                                                  args.timeout))}
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        asyncio.run(remove_topology(args.amqp, env.get("POSTFORDELER_EXCHANGE", "")))
        subprocess.run(["psql", args.pg, "-qc", f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)"],
                       check=False)
        shutil.rmtree(work, ignore_errors=True)
    print("raw RabbitMQ rate on the same broker", file=sys.stderr)
    result["rabbitmq_raw"] = asyncio.run(raw_rabbit_rate(args.amqp, max(args.n, 5000)))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
