"""Rules in the database (SQLite and a fresh PostgreSQL database each): versions with history
and diffs, the router picking a new version up without a restart (and rules.yaml while none is
stored), phrase rules on the stored text, and `postfordeler rules import|export`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select
from typer.testing import CliRunner

from postfordeler.cli import app as cli
from services import classifier, router
from shared.bus import RetryPolicy
from shared.bus._memory import MemoryBus
from shared.contracts import ItemExtracted, ItemState
from shared.db import create_engine, session_factory
from shared.db.models import AuditPending, Item
from shared.rules import RuleSet, load_yaml, store
from shared.runtime import Runtime
from shared.settings import DEMO_TENANT_DIR, Settings
from tests.conftest import async_wait_for, own_database

DEMO_RULES = load_yaml(DEMO_TENANT_DIR / "rules.yaml")


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of this test's own: the active rule set is global to a database, so a
    shared one would hand these rules to other tests' routers."""
    with own_database(request, "pf_rules") as url:
        yield url


def with_rule(base: RuleSet, name: str, **changes: object) -> RuleSet:
    rules = tuple(r.model_copy(update=changes) if r.name == name else r for r in base.rules)
    return base.model_copy(update={"rules": rules})


async def test_versions_history_and_diff(fresh_db: str) -> None:
    engine = create_engine(fresh_db)
    try:
        async with session_factory(engine)() as s:
            assert await store.latest_version(s) is None and await store.active(s) is None
            first = await store.save(s, DEMO_RULES, author="ops", comment="start")
            changed = with_rule(DEMO_RULES, "Rotter", enabled=False)
            second = await store.save(s, changed, author="TBN", comment="rotter via model")
            await s.commit()
            assert (first.version, second.version) == (1, 2)
            version, active = await store.active(s)  # type: ignore[misc]
            assert version == 2 and active == changed
            with pytest.raises(store.StaleVersion):
                await store.save(s, DEMO_RULES, author="x", base_version=1, check_base=True)
            await s.rollback()
            hist = await store.history(s)
            assert [(r.version, r.author, r.comment) for r, _ in hist] == [
                (2, "TBN", "rotter via model"), (1, "ops", "start")]
            assert [c.words() for c in hist[0][1]] == ["rule 'Rotter': enabled true -> false"]
            assert {c.kind for c in hist[1][1]} == {"added", "changed"}  # from nothing
            only = await store.history(s, rule="Rotter")
            assert [r.version for r, _ in only] == [2, 1]
            affald = await store.history(s, rule="Affald")
            assert [r.version for r, _ in affald] == [1]
    finally:
        await engine.dispose()


async def test_router_uses_the_database_version_without_a_restart(
        fresh_db: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=fresh_db,  # type: ignore[arg-type]
                        rules_refresh=0)
    runtime = Runtime(settings, bus=MemoryBus(policy=RetryPolicy(3, 0.01, 0.05), prefetch=4))
    await runtime.start()
    try:
        await classifier.start(runtime)
        await router.start(runtime)

        async def send(body: str) -> Item:
            text = await runtime.blobs.put(body.encode(), "text/plain")
            event = ItemExtracted(correlation_id=uuid.uuid4(), producer="test",
                                  item_id=uuid.uuid4(), channel="email", mailbox="post",
                                  subject="Henvendelse", text=text,
                                  sender={"name": "Bo", "address": "bo@example.dk"})
            async with runtime.uow() as uow:  # as the extractor does: item and event together
                item = Item(id=event.item_id, correlation_id=event.correlation_id,
                            channel="email", mailbox="post", source_ref=str(event.item_id),
                            subject="Henvendelse", sender="bo@example.dk",
                            state=ItemState.EXTRACTED.value)
                uow.session.add(item)
                uow.emit(event)
                await uow.commit()
            await runtime.relay.publish(uow.emitted)

            seen: list[Item] = []

            async def decided() -> bool:
                async with runtime.uow() as uow:
                    found = await uow.item(event.item_id, lock=False)
                seen.append(found)
                return found.state not in (ItemState.EXTRACTED.value,
                                           ItemState.CLASSIFIED.value)

            await async_wait_for(decided, timeout=20)
            return seen[-1]

        # No version stored: the tenant's rules.yaml decides.
        item = await send("Der er rotter i min have")
        assert (item.state, item.unit) == ("routed", "natur-miljoe")
        assert item.decision and item.decision["rule_version"] is None
        assert item.decision["rules"] == ["Rotter"]

        # A new version with a phrase rule (on the stored text) that marks the item sensitive
        # and sends it to a clerk; the router picks it up on the next item.
        phrase = {"name": "Anonym henvendelse", "priority": 0, "when": {"phrase": "min have"},
                  "then": {"clerk": "MHA", "sensitive": True, "journal": "new_case",
                           "case_title": "Rotter hos {sender}"}}
        proposed = RuleSet.parse({**DEMO_RULES.document(),
                                  "rules": [phrase, *DEMO_RULES.document()["rules"]]})
        async with session_factory(runtime.engine)() as s:
            await store.save(s, proposed, author="ops")
            await s.commit()
        item = await send("Der er rotter i min  have")
        assert (item.unit, item.clerk) == ("borgerservice", "MHA")
        assert item.decision and item.decision["rule_version"] == 1
        assert item.decision["sensitive"] is True
        assert item.decision["case_title"] == "Rotter hos bo@example.dk"
        assert item.decision["reasons"][0].startswith(
            "borgerservice/MHA: rule 'Anonym henvendelse' matched phrase 'min have'")
    finally:
        await runtime.stop()


def test_cli_import_export_and_refusal(fresh_db: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTFORDELER_DATABASE_URL", fresh_db)
    monkeypatch.setenv("POSTFORDELER_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    exported = runner.invoke(cli, ["rules", "export"])
    assert exported.exit_code == 0, exported.output
    assert "from the tenant's rules.yaml" in exported.output
    assert RuleSet.parse(yaml.safe_load(exported.output)) == DEMO_RULES

    changed = with_rule(DEMO_RULES, "Affald", priority=3)
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(changed.document(), allow_unicode=True), encoding="utf-8")
    imported = runner.invoke(cli, ["rules", "import", str(path), "--comment", "affald først",
                                   "--author", "ops"])
    assert imported.exit_code == 0, imported.output
    assert "as version 1" in imported.output
    again = runner.invoke(cli, ["rules", "export"])
    assert "version 1" in again.output
    assert RuleSet.parse(yaml.safe_load(again.output)) == RuleSet.parse(changed.document())
    history = runner.invoke(cli, ["rules", "history"])
    assert "version 1" in history.output and "affald først" in history.output

    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: x\n    when: {regex: '(unclosed'}\n"
                   "    then: {route: affald}\n", encoding="utf-8")
    refused = runner.invoke(cli, ["rules", "import", str(bad)])
    assert refused.exit_code == 2
    assert "rules.0.when.regex" in refused.output
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("rules:\n  - {name: y, when: {entity: cpr}, then: {route: nowhere}}\n",
                       encoding="utf-8")
    refused = runner.invoke(cli, ["rules", "import", str(unknown)])
    assert refused.exit_code == 2 and "rules.0.then.route" in refused.output
    assert "version 1" in runner.invoke(cli, ["rules", "export"]).output  # nothing saved


async def test_import_is_audited(fresh_db: str, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTFORDELER_DATABASE_URL", fresh_db)
    path = tmp_path / "rules.yaml"
    path.write_text((DEMO_TENANT_DIR / "rules.yaml").read_text(encoding="utf-8"),
                    encoding="utf-8")
    result = await asyncio.to_thread(CliRunner().invoke, cli,
                                     ["rules", "import", str(path), "--author", "ops"])
    assert result.exit_code == 0, result.output
    engine = create_engine(fresh_db)
    try:
        async with session_factory(engine)() as s:
            rows = (await s.execute(select(AuditPending))).scalars().all()
    finally:
        await engine.dispose()
    assert [(r.action, r.actor, r.details["version"]) for r in rows] == [
        ("rules_imported", "ops", 1)]
