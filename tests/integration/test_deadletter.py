"""Dead letters: list, show and replay through the API (in-process bus) and the command
line (RabbitMQ, the real `<exchange>.<consumer>.dlq`), and their depth in /metrics."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shared.auth import Role
from shared.bus import RetryPolicy
from shared.contracts import Entity, ItemClassified, ItemEvent
from shared.errors import PermanentError
from shared.runtime import Runtime
from shared.settings import Settings
from tests.conftest import async_wait_for
from tests.support.app import Api, app_settings, runtime_api, runtime_fixture  # noqa: F401 - fixtures


class FlakyRouter:
    """A consumer that refuses everything until it is "fixed"."""

    def __init__(self) -> None:
        self.broken = True
        self.handled: list[uuid.UUID] = []

    async def __call__(self, event: ItemEvent) -> None:
        if self.broken:
            raise PermanentError("rule set failed to load")
        self.handled.append(event.item_id)


def classified() -> ItemClassified:
    return ItemClassified(correlation_id=uuid.uuid4(), producer="classifier",
                          item_id=uuid.uuid4(), personal_data=True,
                          entities=(Entity(kind="cpr", value="010203-1234"),
                                    Entity(kind="plate", value="AB12345")))


@pytest.fixture
def settings(sqlite_url: str, tmp_path: Path) -> Settings:
    return app_settings(sqlite_url, tmp_path)


async def test_list_show_replay_through_the_api(api: Api, runtime: Runtime) -> None:
    router = FlakyRouter()
    await runtime.bus.subscribe("router", ("item.classified",), router)
    event = classified()
    await runtime.bus.publish(event)

    async def dead() -> bool:
        return await runtime.bus.dead_letter_count("router") == 1
    await async_wait_for(dead, timeout=5)
    admin = await api.key(Role.ADMINISTRATOR, name="ops")
    listed = (await api.client.get("/api/v1/deadletters", headers=admin)).json()
    assert listed["depth"]["router"] == 1
    [letter] = [d for d in listed["dead_letters"] if d["consumer"] == "router"]
    assert letter == {"consumer": "router", "message_id": str(event.message_id),
                      "topic": "item.classified", "item_id": str(event.item_id),
                      "event_type": "ItemClassified",
                      "reason": "PermanentError: rule set failed to load", "attempts": None}
    shown = await api.client.get(f"/api/v1/deadletters/router/{event.message_id}",
                                 headers=admin)
    assert shown.status_code == 200
    assert "010203-1234" not in shown.text  # CPR masked, the plate is not personal
    assert {e["value"] for e in shown.json()["body"]["entities"]} == {"[CPR]", "AB12345"}
    metrics = (await api.client.get("/metrics")).text
    assert 'postfordeler_dead_letters{consumer="router"} 1.0' in metrics
    assert (await api.client.get("/api/v1/deadletters/nobody/x",
                                 headers=admin)).status_code == 404

    router.broken = False
    r = await api.client.post("/api/v1/deadletters/router/replay", headers=admin,
                              params={"message_id": str(event.message_id)})
    assert r.json() == {"replayed": 1}

    async def handled() -> bool:
        return router.handled == [event.item_id]
    await async_wait_for(handled, timeout=5)
    assert await runtime.bus.dead_letter_count("router") == 0
    again = await api.client.post("/api/v1/deadletters/router/replay", headers=admin,
                                  params={"message_id": str(event.message_id)})
    assert again.status_code == 404


async def test_command_line_on_rabbitmq(rabbit_url: str, sqlite_url: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.bus._rabbitmq import RabbitBus

    exchange = f"pf-dlq-{uuid.uuid4().hex[:8]}"
    bus = RabbitBus(rabbit_url, exchange=exchange, policy=RetryPolicy(1, 0.01, 0.01))
    router = FlakyRouter()
    try:
        await bus.subscribe("router", ("item.classified",), router)
        events = [classified() for _ in range(2)]
        for event in events:
            await bus.publish(event)

        async def dead() -> bool:
            return await bus.dead_letter_count("router") == 2
        await async_wait_for(dead, timeout=10)
        for name, value in {"POSTFORDELER_AMQP_URL": rabbit_url,
                            "POSTFORDELER_EXCHANGE": exchange,
                            "POSTFORDELER_DATABASE_URL": sqlite_url}.items():
            monkeypatch.setenv(name, value)
        from postfordeler.cli import app

        runner = CliRunner()

        def cli(*args: str) -> tuple[int, str]:
            result = runner.invoke(app, ["deadletter", *args])
            return result.exit_code, result.stdout

        code, out = await asyncio.to_thread(cli, "list", "--consumer", "router")
        assert code == 0 and all(str(e.message_id) in out for e in events)
        assert "rule set failed to load" in out
        # Listing takes nothing away: the messages it read come back to the queue when its
        # channel closes (a quorum queue returns them shortly after, not within the close).
        await async_wait_for(dead, timeout=10)
        code, out = await asyncio.to_thread(cli, "show", "router", str(events[0].message_id))
        assert code == 0 and "AB12345" in out and "010203-1234" not in out
        router.broken = False
        code, out = await asyncio.to_thread(cli, "replay", "router", str(events[0].message_id))
        assert code == 0 and "1 dead letter(s) replayed" in out

        async def one_handled() -> bool:
            return router.handled == [events[0].item_id]
        await async_wait_for(one_handled, timeout=10)

        async def one_left() -> bool:  # the other one returns to the queue (see above)
            return await bus.dead_letter_count("router") == 1
        await async_wait_for(one_left, timeout=10)
        code, out = await asyncio.to_thread(cli, "replay", "router", "--all")
        assert code == 0 and "1 dead letter(s) replayed" in out

        async def both_handled() -> bool:
            return sorted(router.handled) == sorted(e.item_id for e in events)
        await async_wait_for(both_handled, timeout=10)
        assert await bus.dead_letter_count("router") == 0
        assert (await asyncio.to_thread(cli, "show", "router", "nope"))[0] == 1
    finally:
        await bus.delete_topology(["router"])
        await bus.close()
