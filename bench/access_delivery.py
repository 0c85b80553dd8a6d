"""Delivery and API benchmark: N routed items forwarded to a local SMTP server (aiosmtpd) by the
delivery consumer on the in-process bus, then the clerk API read with an API key.

    python bench/access_delivery.py --n 500 [--db postgresql+asyncpg://...]

Reports forwards/s (SMTP round trip and both bookkeeping transactions included) and the API's
requests/s and p50/p95 for GET /api/v1/items/{id} with API-key authentication. SQLite in a
temporary directory unless --db names a (disposable) database.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from routed_items import add_routed, database, machine  # noqa: E402  (beside this file)

from services.api import create_app  # noqa: E402
from services.delivery import start as start_delivery  # noqa: E402
from shared.auth import Role, create_key  # noqa: E402
from shared.db.models import Delivery  # noqa: E402
from shared.runtime import Runtime  # noqa: E402
from shared.settings import Settings  # noqa: E402
from tests.support.smtp import SmtpServer  # noqa: E402

RAW = b"From: a@example.dk\r\nSubject: Parkering\r\n\r\nHej\r\n"


async def main(n: int, db: str | None) -> None:
    tmp, url = await database(db)
    smtp = SmtpServer().start()
    settings = Settings(data_dir=tmp, database_url=url, amqp_url="memory://",
                        smtp_host=smtp.host, smtp_port=smtp.port, ops_check_interval=3600)
    runtime = Runtime(settings)
    await runtime.start()
    try:
        async with runtime.uow() as uow:
            events = await add_routed(uow, runtime.blobs, n, RAW)
            issued = await create_key(uow.session, name="TBN", role=Role.CLERK,
                                      units=["parkering"])
            await uow.commit()
        await start_delivery(runtime)
        started = time.perf_counter()
        for event in events:
            await runtime.bus.publish(event)
        while smtp.count() < n:  # noqa: ASYNC110 - the SMTP server lives in another thread
            await asyncio.sleep(0.05)
        forwarded = time.perf_counter() - started
        async with runtime.uow() as uow:
            sent = (await uow.session.execute(select(func.count()).select_from(Delivery).where(
                Delivery.status == "sent"))).scalar_one()

        app = create_app(settings, bus=runtime.bus)
        headers = {"Authorization": f"Bearer {issued.key}"}
        latencies = []
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://bench",
                headers=headers) as client:
            api_started = time.perf_counter()
            for event in events[:min(n, 300)]:
                t = time.perf_counter()
                r = await client.get(f"/api/v1/items/{event.item_id}")
                latencies.append(time.perf_counter() - t)
                assert r.status_code == 200, r.text
            api_total = time.perf_counter() - api_started
        q = statistics.quantiles(latencies, n=20)
        print(machine(url))
        print(f"forwards: {n} in {forwarded:.2f} s = {n / forwarded:.0f}/s "
              f"({sent} delivery rows sent, {smtp.count()} mails at SMTP)")
        print(f"GET /api/v1/items/{{id}} with an API key: {len(latencies) / api_total:.0f} req/s, "
              f"p50 {statistics.median(latencies) * 1000:.1f} ms, p95 {q[18] * 1000:.1f} ms")
    finally:
        await runtime.stop()
        smtp.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--db", default=None)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.db))
