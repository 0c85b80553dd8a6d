"""Access control against the real API (ASGI) on SQLite and PostgreSQL: API keys and OIDC
tokens, roles and unit scopes, sensitive units. Each role is refused what it must not see or
do, and refusals carry no item data."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shared.auth import Role
from shared.settings import Settings
from tests.support.app import Api, app_settings, make_tenant, serve_api  # noqa: F401 (re-export)

SECRET_SUBJECT = "Fortroligt emne 4711"


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return app_settings(db_url, tmp_path)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with serve_api(Api, settings) as api:
        yield api


PROTECTED = [("GET", "/api/v1/items"), ("GET", "/api/v1/triage"),
             ("GET", "/api/v1/apikeys"), ("GET", "/api/v1/deadletters"),
             ("GET", "/api/v1/audit/journal"), ("POST", "/api/v1/apikeys")]


async def test_no_or_bad_credentials_get_401_and_health_stays_open(api: Api) -> None:
    item = await api.item("parkering", subject=SECRET_SUBJECT)
    bad = [{}, {"Authorization": "Bearer pf_000000000000_" + "x" * 43},
           {"Authorization": "Bearer not-a-key"}, {"Authorization": "Basic dXNlcjpwdw=="},
           {"Authorization": "Bearer a.b.c"}]  # a JWT-shaped token, but OIDC is off
    for headers in bad:
        for method, path in [*PROTECTED, ("GET", f"/api/v1/items/{item}"),
                             ("POST", f"/api/v1/items/{item}/claim")]:
            r = await api.client.request(method, path, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.status_code)
            assert r.json() == {"detail": "authentication required"}
            assert r.headers["www-authenticate"].startswith("Bearer")
    assert (await api.client.get("/health/live")).status_code == 200
    assert (await api.client.get("/metrics")).status_code == 200


async def test_revoked_and_tampered_keys_are_refused(api: Api) -> None:
    admin = await api.key(Role.ADMINISTRATOR, name="ops")
    r = await api.client.post("/api/v1/apikeys", headers=admin,
                              json={"name": "LKJ", "role": "clerk", "units": ["parkering"]})
    assert r.status_code == 201, r.text
    created = r.json()
    clerk = {"Authorization": f"Bearer {created['key']}"}
    assert (await api.client.get("/api/v1/items", headers=clerk)).status_code == 200
    tampered = {"Authorization": f"Bearer {created['key'][:-2]}xy"}
    assert (await api.client.get("/api/v1/items", headers=tampered)).status_code == 401
    listed = (await api.client.get("/api/v1/apikeys", headers=admin)).json()
    mine = [k for k in listed if k["id"] == created["id"]]
    assert mine and "key" not in mine[0] and "key_hash" not in mine[0]
    assert created["key"] not in (await api.client.get("/api/v1/apikeys", headers=admin)).text
    assert (await api.client.delete(f"/api/v1/apikeys/{created['id']}",
                                    headers=admin)).status_code == 204
    assert (await api.client.get("/api/v1/items", headers=clerk)).status_code == 401
    assert (await api.client.delete(f"/api/v1/apikeys/{created['id']}",
                                    headers=admin)).status_code == 404
    # a clerk key without a unit is refused with a reason
    r = await api.client.post("/api/v1/apikeys", headers=admin,
                              json={"name": "X", "role": "clerk"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "units"


async def test_each_role_is_refused_what_it_must_not_do(api: Api) -> None:
    parking = await api.item("parkering")
    other = await api.item("byggeri", subject=SECRET_SUBJECT)
    clerk = await api.key(Role.CLERK, units=("parkering",))
    auditor = await api.key(Role.AUDITOR, name="revisor")
    form = await api.key(Role.FORM_CLIENT, forms=("beboerparkering",), name="selvbetjening")
    admin = await api.key(Role.ADMINISTRATOR, name="ops")

    # clerks: own units only; another unit's item looks exactly like a missing one
    listed = (await api.client.get("/api/v1/items", headers=clerk,
                                   params={"limit": 1000})).json()
    assert {i["unit"] for i in listed["items"]} == {"parkering"}
    assert str(parking) in {i["id"] for i in listed["items"]}
    assert (await api.client.get(f"/api/v1/items/{parking}", headers=clerk)).status_code == 200
    for path in (f"/api/v1/items/{other}", f"/api/v1/items/{other}/raw",
                 f"/api/v1/items/{other}/attachments/0"):
        r = await api.client.get(path, headers=clerk)
        assert r.status_code == 404 and SECRET_SUBJECT not in r.text
        assert r.json() == {"detail": "item not found"}
    r = await api.client.post(f"/api/v1/items/{other}/claim", headers=clerk)
    assert r.status_code == 404 and SECRET_SUBJECT not in r.text
    r = await api.client.post(f"/api/v1/items/{other}/reroute", headers=clerk,
                              json={"unit": "parkering", "reason": "mine"})
    assert r.status_code == 404
    for method, path in [("GET", "/api/v1/apikeys"), ("POST", "/api/v1/apikeys"),
                         ("GET", "/api/v1/deadletters"), ("GET", "/api/v1/audit/journal"),
                         ("POST", "/api/v1/deadletters/router/replay")]:
        r = await api.client.request(method, path, headers=clerk,
                                     json={"name": "x", "role": "administrator"})
        assert r.status_code == 403, (method, path)
        assert r.json() == {"detail": "forbidden"}

    # the audit log spans every unit: auditors only
    audit_paths = ("/api/v1/audit/journal", "/api/v1/audit/verify", "/api/v1/audit/entries",
                   "/api/v1/audit/entries.csv", f"/api/v1/items/{other}/receipt")
    for headers in (clerk, form, admin):
        for path in audit_paths:
            r = await api.client.get(path, headers=headers)
            assert r.status_code == 403 and SECRET_SUBJECT not in r.text, path

    # auditors read everything but change nothing
    assert (await api.client.get(f"/api/v1/items/{other}", headers=auditor)).status_code == 200
    for path in audit_paths[:4]:
        assert (await api.client.get(path, headers=auditor)).status_code == 200, path
    for action in ("claim", "done", "release"):
        r = await api.client.post(f"/api/v1/items/{parking}/{action}", headers=auditor)
        assert r.status_code == 403, action
    assert (await api.client.get("/api/v1/apikeys", headers=auditor)).status_code == 403

    # form clients submit forms; they see no items at all
    for path in ("/api/v1/items", f"/api/v1/items/{parking}", "/api/v1/triage",
                 "/api/v1/audit/journal", "/api/v1/deadletters"):
        r = await api.client.get(path, headers=form)
        assert r.status_code == 403 and SECRET_SUBJECT not in r.text, path

    # administrators manage keys and dead letters, and cannot act as clerks
    assert (await api.client.get("/api/v1/apikeys", headers=admin)).status_code == 200
    assert (await api.client.get("/api/v1/deadletters", headers=admin)).status_code == 200
    r = await api.client.post(f"/api/v1/items/{parking}/claim", headers=admin)
    assert r.status_code == 403
    assert (await api.client.get("/api/v1/audit/journal", headers=admin)).status_code == 403


async def test_sensitive_units_only_for_their_clerks_and_auditors(api: Api) -> None:
    hidden = f"Fortroligt {uuid.uuid4().hex}"
    secret = await api.item("jobcenter", subject=hidden)
    plain = await api.item("parkering")
    admin = await api.key(Role.ADMINISTRATOR, name="ops")
    auditor = await api.key(Role.AUDITOR, name="revisor")
    job_clerk = await api.key(Role.CLERK, units=("jobcenter",), name="DMI")
    parking_clerk = await api.key(Role.CLERK, units=("parkering",))

    listed = (await api.client.get("/api/v1/items", headers=admin,
                                   params={"limit": 1000})).json()
    ids = {i["id"] for i in listed["items"]}
    assert str(plain) in ids and str(secret) not in ids
    assert hidden not in str(listed)
    by_unit = await api.client.get("/api/v1/items", headers=admin, params={"unit": "jobcenter"})
    assert by_unit.json()["total"] == 0
    for headers in (admin, parking_clerk):
        r = await api.client.get(f"/api/v1/items/{secret}", headers=headers)
        assert r.status_code == 404 and hidden not in r.text
    for headers in (auditor, job_clerk):
        r = await api.client.get(f"/api/v1/items/{secret}", headers=headers)
        assert r.status_code == 200 and r.json()["subject"] == hidden


def test_apikey_command(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from postfordeler.cli import app

    monkeypatch.setenv("POSTFORDELER_DATABASE_URL", settings.db_url)
    monkeypatch.setenv("POSTFORDELER_TENANT_DIR", str(settings.tenant_dir))
    runner = CliRunner()
    r = runner.invoke(app, ["apikey", "create", "--role", "clerk", "--name", "TBN",
                            "--unit", "parkering"])
    assert r.exit_code == 0, r.output
    key = r.stdout.strip().splitlines()[0]
    assert key.startswith("pf_")
    listed = runner.invoke(app, ["apikey", "list"])
    assert listed.exit_code == 0 and "parkering" in listed.stdout and key not in listed.stdout
    bad = runner.invoke(app, ["apikey", "create", "--role", "clerk", "--name", "X"])
    assert bad.exit_code != 0 and "unit" in bad.output
    unknown = runner.invoke(app, ["apikey", "create", "--role", "clerk", "--name", "X",
                                  "--unit", "nowhere"])
    assert unknown.exit_code != 0 and "nowhere" in unknown.output
    revoked = runner.invoke(app, ["apikey", "revoke", key])
    assert revoked.exit_code == 0, revoked.output
    assert runner.invoke(app, ["apikey", "revoke", key]).exit_code == 1
