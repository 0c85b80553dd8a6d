"""The rules API against the real app (ASGI) on SQLite and a fresh PostgreSQL database:
administrators read, save, enable, disable and simulate; every other role is refused;
invalid rules answer 422 naming the field; every change is a version and an audit entry."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from services.classifier.entities import extract
from shared.auth import Role
from shared.contracts import ItemClassified, ItemState
from shared.db.models import AuditPending, Item
from shared.rules import RuleSet, dump_yaml, load_yaml
from shared.rules.engine import Facts
from shared.rules.replay import Organisation
from shared.settings import DEMO_TENANT_DIR
from shared.tenant import Tenant
from tests.conftest import own_database
from tests.support.app import Api, app_settings, serve_api

RULES = "/api/v1/rules"


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_db(request: pytest.FixtureRequest) -> Iterator[str]:
    with own_database(request, "pf_rules_api") as url:
        yield url


@pytest.fixture
async def api(fresh_db: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with serve_api(Api, app_settings(fresh_db, tmp_path)) as api:
        yield api


ROTTER = {"name": "Rotter", "priority": 20, "when": {"keywords_any": ["rotte", "rotter"]},
          "then": {"route": "affald", "journal": "new_case", "receipt": True}}


async def test_other_roles_are_refused_everything(api: Api) -> None:
    calls = [("GET", RULES, None), ("PUT", RULES, {"rules": []}),
             ("POST", RULES, ROTTER), ("GET", f"{RULES}/history", None),
             ("GET", f"{RULES}/Rotter", None), ("PUT", f"{RULES}/Rotter", ROTTER),
             ("POST", f"{RULES}/Rotter/enable", None), ("POST", f"{RULES}/Rotter/disable", None),
             ("DELETE", f"{RULES}/Rotter", None), ("GET", f"{RULES}/Rotter/history", None),
             ("GET", f"{RULES}/versions/1", None), ("POST", f"{RULES}/simulate", {"last": 5})]
    refused = [({}, 401), (await api.key(Role.CLERK, units=("affald",)), 403),
               (await api.key(Role.AUDITOR), 403),
               (await api.key(Role.FORM_CLIENT, forms=("x",)), 403)]
    for headers, status in refused:
        for method, path, body in calls:
            r = await api.client.request(method, path, headers=headers, json=body)
            assert r.status_code == status, (method, path, headers, r.text)
            assert r.json()["detail"] in ("authentication required", "forbidden")
    admin = await api.key(Role.ADMINISTRATOR)
    assert (await api.client.get(RULES, headers=admin)).json()["version"] is None


async def test_admin_edits_rules_with_versions_history_and_audit(api: Api) -> None:
    admin = await api.key(Role.ADMINISTRATOR, name="ops")
    r = await api.client.get(RULES, headers=admin)
    assert r.status_code == 200 and r.json()["source"] == "rules.yaml"
    assert len(r.json()["ruleset"]["rules"]) == len(load_yaml(DEMO_TENANT_DIR / "rules.yaml")
                                                     .rules)
    r = await api.client.put(f"{RULES}/Rotter", headers=admin, json=ROTTER,
                             params={"comment": "rotter til affald"})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2  # version 1 keeps rules.yaml, in force until then
    assert (await api.client.get(f"{RULES}/Rotter", headers=admin)).json()["rule"]["then"][
        "route"] == "affald"
    r = await api.client.post(f"{RULES}/Rotter/disable", headers=admin)
    assert r.status_code == 200 and r.json()["rule"]["enabled"] is False
    assert (await api.client.post(f"{RULES}/Rotter/enable", headers=admin)).json()[
        "version"] == 4
    history = (await api.client.get(f"{RULES}/Rotter/history", headers=admin)).json()
    assert [h["version"] for h in history] == [4, 3, 2, 1]
    assert history[3]["author"] == "rules.yaml"
    assert history[1]["changes"][0]["words"] == "rule 'Rotter': enabled true -> false"
    assert any(c["field"] == "then.route" and c["old"] == "natur-miljoe" and c["new"] == "affald"
               for c in history[2]["changes"])
    assert history[2]["author"] == "ops" and history[2]["comment"] == "rotter til affald"
    # create, conflict, stale base, delete
    new = {"name": "Faktura", "when": {"regex": r"faktura\s*nr"}, "then": {"route": "affald"}}
    assert (await api.client.post(RULES, headers=admin, json=new)).status_code == 201
    assert (await api.client.post(RULES, headers=admin, json=new)).status_code == 409
    r = await api.client.put(f"{RULES}/Faktura", headers=admin, json=new,
                             params={"base_version": 2})
    assert r.status_code == 409
    assert (await api.client.delete(f"{RULES}/Faktura", headers=admin)).status_code == 200
    assert (await api.client.get(f"{RULES}/Faktura", headers=admin)).status_code == 404
    assert (await api.client.get(f"{RULES}/versions/5", headers=admin)).json()["ruleset"][
        "rules"][-1]["name"] == "Faktura"
    async with api.uow() as uow:
        actions = [(a.action, a.actor) for a in (await uow.session.execute(
            select(AuditPending).order_by(AuditPending.id))).scalars()]
    assert actions == [("rule_updated", "ops"), ("rule_disabled", "ops"),
                       ("rule_enabled", "ops"), ("rule_created", "ops"),
                       ("rule_deleted", "ops")]


@pytest.mark.parametrize("body, field", [
    ({**ROTTER, "when": {"regex": "(a"}}, ["body", "when", "regex"]),
    ({**ROTTER, "when": {"regex": r"(\w+\s?)+$"}}, ["body", "when", "regex"]),
    ({**ROTTER, "then": {"route": "affald", "journal": "sometimes"}},
     ["body", "then", "journal"]),
    ({**ROTTER, "when": {"keyword": ["rotte"]}}, ["body", "when", "keyword"]),
    ({**ROTTER, "then": {"route": "nowhere"}}, ["body", "then", "route"]),
    ({**ROTTER, "then": {"route": "affald", "clerk": "MHA"}},
     ["body", "then", "clerk"]),
])
async def test_invalid_rule_answers_422_naming_the_field(api: Api, body: dict,
                                                         field: list[str]) -> None:
    admin = await api.key(Role.ADMINISTRATOR)
    r = await api.client.put(f"{RULES}/Rotter", headers=admin, json=body)
    assert r.status_code == 422, r.text
    locs = [[str(p) for p in d["loc"]] for d in r.json()["detail"]]
    assert any(loc[:len(field)] == field or loc == field for loc in locs), locs
    assert (await api.client.get(RULES, headers=admin)).json()["version"] is None


async def _routed_item(api: Api, body: str, sensitive_unit: bool = False) -> uuid.UUID:
    """An item as the pipeline leaves it: its ItemClassified event in the outbox and the
    decision the active rules (rules.yaml) gave it."""
    entities = extract("Henvendelse", body, sender="bo@example.dk")
    org = Organisation.of(Tenant(api.settings.tenant_dir))
    facts = Facts(entities, mailbox="post", sender="bo@example.dk", subject="Henvendelse")
    decision = org.decide(load_yaml(api.settings.tenant_dir / "rules.yaml"), facts)
    item_id = uuid.uuid4()
    async with api.uow() as uow:
        item = Item(id=item_id, correlation_id=uuid.uuid4(), channel="email", mailbox="post",
                    source_ref=str(item_id), subject="Henvendelse", sender="bo@example.dk",
                    state=ItemState.CLASSIFIED.value)
        uow.session.add(item)
        await uow.session.flush()
        classified = ItemClassified(correlation_id=item.correlation_id, producer="classifier",
                                    item_id=item_id, entities=entities)
        uow.emit(classified)
        item.unit = decision.unit
        item.decision = decision.summary()
        uow.transition(item, ItemState.ROUTED, reason="test", producer="router")
        await uow.commit()
    return item_id


async def test_simulate_replays_recent_items_and_labelled_files(api: Api) -> None:
    admin = await api.key(Role.ADMINISTRATOR)
    rats = await _routed_item(api, "Der er rotter i haven")
    plate = await _routed_item(api, "Min bil AB 12 345 fik en afgift")
    hidden = await _routed_item(api, "Jeg søger dagpenge og har en jobsamtale")  # jobcenter
    current = (await api.client.get(RULES, headers=admin)).json()["ruleset"]
    proposed = {**current, "rules": [ROTTER if r["name"] == "Rotter" else r
                                     for r in current["rules"]]}
    r = await api.client.post(f"{RULES}/simulate", headers=admin,
                              json={"rules": proposed, "last": 50})
    assert r.status_code == 200, r.text
    result = r.json()
    assert (result["items"], result["changed"], result["hidden"]) == (3, 1, 1)
    (only,) = result["results"]
    assert only["item"] == str(rats) and only["changed"] == ["unit", "kle"]
    assert (only["old"]["unit"], only["new"]["unit"]) == ("natur-miljoe", "affald")
    assert only["new"]["reasons"] == ["affald: rule 'Rotter' matched keyword 'rotte', 'rotter'"]
    assert str(plate) not in r.text and str(hidden) not in r.text
    # nothing was saved by the dry run
    assert (await api.client.get(RULES, headers=admin)).json()["version"] is None
    # a proposed rule that is invalid is refused naming the field
    bad = {**proposed, "rules": [*proposed["rules"], {**ROTTER, "name": "X",
                                                       "then": {"route": "nowhere"}}]}
    r = await api.client.post(f"{RULES}/simulate", headers=admin, json={"rules": bad})
    assert r.status_code == 422 and "then.route" in r.text

    # an uploaded labelled file, compared with the active rules and with the labels
    lines = [{"id": "a", "channel": "email", "mailbox": "post",
              "from": {"name": "Bo", "address": "bo@example.dk"}, "subject": "Rotter",
              "body": "Der er rotter i haven", "label": {"unit": "affald"}},
             {"id": "b", "channel": "form", "mailbox": "form", "from": None, "subject": None,
              "body": "storskrald", "form": {"form_id": "bestil-storskrald"},
              "label": {"unit": "affald"}}]
    upload = "\n".join(json.dumps(x) for x in lines).encode()
    yaml_rules = dump_yaml(RuleSet.parse(proposed))
    r = await api.client.post(f"{RULES}/simulate/file", headers=admin,
                              files={"file": ("items.jsonl", upload, "application/x-ndjson")},
                              data={"rules": yaml_rules, "only_changed": "false"})
    assert r.status_code == 200, r.text
    result = r.json()
    assert (result["items"], result["changed"]) == (2, 1)
    assert (result["right_before"], result["right_after"]) == (1, 2)
    assert [x["item"] for x in result["results"]] == ["a", "b"]
    assert result["results"][0]["expected"] == "affald"
    r = await api.client.post(f"{RULES}/simulate/file", headers=admin,
                              files={"file": ("items.jsonl", b"{not json", "text/plain")})
    assert r.status_code == 422 and "line 1" in r.text
