"""Operations alerts by e-mail to a real SMTP server, on SQLite and PostgreSQL: a failed item,
a mailbox unreachable for longer than allowed, a growing dead-letter queue; each kind at most
once per interval (the clock is the test's)."""

from __future__ import annotations

import asyncio
import email
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from email import policy
from pathlib import Path

import pytest

from services.delivery import Monitor
from shared.bus import make_bus
from shared.contracts import ItemState
from shared.db import create_engine, session_factory, uow_factory
from shared.db.models import Item, MailboxStatus, utcnow
from shared.errors import PermanentError
from shared.mail import SmtpSender
from shared.settings import Settings
from tests.conftest import own_database
from tests.integration.test_deadletter import classified
from tests.support.smtp import SmtpServer, smtp_server  # noqa: F401 - fixture


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(params=["sqlite", "postgres"])
def own_db_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The monitor looks at every failed item and mailbox: a database of its own, so items
    other tests failed moments ago in the shared one are not alerted here."""
    with own_database(request, "pf_alerts") as url:
        yield url


@pytest.fixture
def settings(own_db_url: str, tmp_path: Path, smtp_server: SmtpServer) -> Settings:  # noqa: F811
    return Settings(data_dir=tmp_path, database_url=own_db_url,  # type: ignore[arg-type]
                    smtp_host=smtp_server.host, smtp_port=smtp_server.port,
                    ops_alert_to="drift@demoby.dk", ops_alert_interval=600,
                    ops_mailbox_down_after=300, ops_dlq_threshold=0)


def subjects(server: SmtpServer) -> list[str]:
    return [str(email.message_from_bytes(raw, policy=policy.default)["Subject"])
            for raw in server.raw_messages()]


async def test_alerts_are_sent_and_rate_limited(settings: Settings,
                                                smtp_server: SmtpServer) -> None:  # noqa: F811
    engine = create_engine(settings.db_url)
    uow = uow_factory(session_factory(engine))
    bus = make_bus("memory://")
    clock = Clock()
    mailbox = f"post-{uuid.uuid4().hex[:6]}"
    monitor = Monitor(uow, bus, SmtpSender(settings), settings, "post@demoby.dk",
                      consumers=("router",), clock=clock)

    async def fail_item() -> uuid.UUID:
        item_id = uuid.uuid4()
        async with uow() as u:
            item = Item(id=item_id, correlation_id=uuid.uuid4(), channel="email",
                        mailbox=mailbox, source_ref=str(item_id), state="received",
                        updated_at=clock.now)
            u.session.add(item)
            await u.session.flush()
            item.failure_reason = "InvalidInput: blob is corrupt"
            u.transition(item, ItemState.FAILED, reason=item.failure_reason)
            item.updated_at = clock.now
            await u.commit()
        return item_id

    try:
        assert await monitor.check() == []
        first = await fail_item()
        clock.advance(1)
        assert await monitor.check() == ["item_failed"]
        [raw] = smtp_server.raw_messages()
        msg = email.message_from_bytes(raw, policy=policy.default)
        assert msg["To"] == "drift@demoby.dk" and msg["X-Postfordeler-Alert"] == "item_failed"
        assert str(first) in msg.get_content() and "blob is corrupt" in msg.get_content()

        await fail_item()  # within the interval: no second mail, but it is not forgotten
        clock.advance(60)
        assert await monitor.check() == []
        clock.advance(600)
        assert await monitor.check() == ["item_failed"]
        assert await monitor.check() == []  # nothing new

        # a mailbox down: alerted only once it has been down for ops_mailbox_down_after
        async with uow() as u:
            u.session.add(MailboxStatus(name=mailbox, kind="imap", up=False, failures=3,
                                        last_error="ConnectionRefusedError",
                                        last_ok_at=clock.now, checked_at=clock.now))
            await u.commit()
        assert await monitor.check() == []
        clock.advance(301)
        assert await monitor.check() == ["mailbox_down"]
        assert "ConnectionRefusedError" in smtp_server.raw_messages()[-1].decode()

        # the dead-letter queue grows
        async def refuse(_event: object) -> None:
            raise PermanentError("refused")
        await bus.subscribe("router", ("item.classified",), refuse)
        await bus.publish(classified())
        for _ in range(50):
            if await bus.dead_letter_count("router"):
                break
            await asyncio.sleep(0.02)
        assert await monitor.check() == ["dead_letters"]
        assert await monitor.check() == []  # not grown since
        assert subjects(smtp_server)[-1] == \
            "[Postfordeler alert] dead-letter queues hold 1 message(s)"
        assert len(smtp_server.raw_messages()) == 4
    finally:
        await bus.close()
        await engine.dispose()
