"""The web interface through the real application (ASGI, SQLite): sign-in and the signed
cookie, CSRF, the same roles and unit scopes as the API (sensitive units too), the clerk's
actions, rule validation next to the field, the dashboard and audit pages, and the message
catalogue."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from services.api.ui import session as ui_session
from services.api.ui.i18n import EN
from services.api.ui.overview_pages import bars, hourly, outcome
from shared.auth import Role, create_key
from shared.contracts import ItemState
from shared.db.models import Item
from shared.settings import Settings
from tests.integration.test_clerk import ClerkApi
from tests.support.app import app_settings, serve_api

TEMPLATES = Path(__file__).parents[2] / "services" / "api" / "ui" / "templates"


@pytest.fixture
def settings(sqlite_url: str, tmp_path: Path) -> Settings:
    return app_settings(sqlite_url, tmp_path)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[ClerkApi]:
    async with serve_api(ClerkApi, settings) as api:
        api.routed = []
        yield api


async def _key(api: ClerkApi, role: Role, units: tuple[str, ...] = (), name: str = "TBN") -> str:
    async with api.uow() as uow:
        issued = await create_key(uow.session, name=name, role=role, units=units)
        await uow.commit()
    return issued.key


async def _login_csrf(client: httpx.AsyncClient) -> str:
    form = (await client.get("/ui/login")).text
    match = re.search(r'name="csrf" value="([^"]+)"', form)
    assert match
    return match.group(1)


async def _browser(api: ClerkApi, key: str) -> tuple[httpx.AsyncClient, str]:
    """A separate client (own cookie jar) signed in with `key`; returns it and its CSRF."""
    client = httpx.AsyncClient(transport=api.client._transport, base_url="http://test")
    r = await client.post("/ui/login", data={"key": key, "next": "/ui/items",
                                             "csrf": await _login_csrf(client)})
    assert r.status_code == 303 and r.headers["location"] == "/ui/items"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and "Path=/ui" in cookie
    page = await client.get("/ui/items")
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match
    return client, match.group(1)


async def test_sign_in_required_and_bad_keys_refused(api: ClerkApi) -> None:
    r = await api.client.get("/ui/items?state=done")
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next=")
    key = await _key(api, Role.CLERK, ("affald",))
    # Without the sign-in form's own token (a form on another site), no sign-in.
    assert (await api.client.post("/ui/login", data={"key": key})).status_code == 403
    r = await api.client.post("/ui/login", data={"key": "pf_nope_" + "x" * 40,
                                                 "csrf": await _login_csrf(api.client)})
    assert r.status_code == 401 and 'aria-invalid="true"' in r.text
    r = await api.client.get("/ui/login")
    assert '<label for="key">' in r.text and 'lang="da"' in r.text
    # A tampered cookie is no session.
    client, _ = await _browser(api, key)
    value = client.cookies[ui_session.COOKIE]
    client.cookies.set(ui_session.COOKIE, value[:-2] + ("AA" if value[-2:] != "AA" else "BB"),
                       path="/ui")
    assert (await client.get("/ui/items")).status_code == 303
    await client.aclose()


async def test_clerk_sees_own_unit_only_and_sensitive_refused(api: ClerkApi) -> None:
    mine = await api.mail("affald", subject="Storskrald på vejen")
    other = await api.mail("byggeri", subject="Byggetilladelse carport")
    secret = await api.mail("jobcenter", subject="Fortroligt emne 4711")
    client, _ = await _browser(api, await _key(api, Role.CLERK, ("affald",)))
    page = (await client.get("/ui/items")).text
    assert "Storskrald på vejen" in page and "carport" not in page and "4711" not in page
    assert (await client.get(f"/ui/items/{mine}")).status_code == 200
    for hidden in (other, secret):
        r = await client.get(f"/ui/items/{hidden}")
        assert r.status_code == 404 and "4711" not in r.text
    assert (await client.get(f"/ui/items/{secret}/attachments/0")).status_code == 404
    malformed = await client.get("/ui/items/not-an-id")
    assert malformed.status_code == 404 and 'id="error"' in malformed.text
    assert (await client.get("/ui/rules")).status_code == 403
    assert (await client.get("/ui/audit")).status_code == 403
    admin, _ = await _browser(api, await _key(api, Role.ADMINISTRATOR, name="ops"))
    assert (await admin.get(f"/ui/items/{secret}")).status_code == 404  # sensitive
    assert "carport" in (await admin.get("/ui/items")).text
    await client.aclose()
    await admin.aclose()


async def test_paging(api: ClerkApi) -> None:
    for n in range(27):
        await api.item("affald", subject=f"Sag nummer {n:02d}")
    client, _ = await _browser(api, await _key(api, Role.CLERK, ("affald",)))
    first = (await client.get("/ui/items?unit=affald")).text
    assert "Viser 1–25 af 27" in first and 'offset=25" rel="next"' in first
    second = (await client.get("/ui/items?unit=affald&offset=25")).text
    assert "Viser 26–27 af 27" in second and 'offset=0" rel="prev"' in second
    assert "Sag nummer 00" in second and "Sag nummer 26" in first
    await client.aclose()


async def test_claim_reroute_done_with_csrf(api: ClerkApi) -> None:
    item_id = await api.mail("affald", subject="Forkert enhed")
    client, csrf = await _browser(api, await _key(api, Role.CLERK, ("affald",)))
    r = await client.post(f"/ui/items/{item_id}/claim", data={"csrf": "wrong"})
    assert r.status_code == 403
    r = await client.post(f"/ui/items/{item_id}/claim", data={"csrf": csrf})
    assert r.status_code == 303
    shown = await client.get(r.headers["location"])
    assert "TBN" in shown.text and 'id="notice"' in shown.text
    forged = await client.get(f"/ui/items/{item_id}?notice=Ring+til+os+på+12345678&n=x")
    assert "12345678" not in forged.text  # only the interface's own signed notices show
    item = await client.get(f"/ui/items/{item_id}")
    assert "Hej, jeg har fået en afgift." in item.text and "afgift æøå.pdf" in item.text
    pdf = await client.get(f"/ui/items/{item_id}/attachments/0")
    assert pdf.content == b"%PDF-1.4 afgift"
    r = await client.post(f"/ui/items/{item_id}/reroute/to",
                          data={"csrf": csrf, "unit": "byggeri", "reason": "Om carport"})
    assert r.status_code == 303
    async with api.uow() as uow:
        row = (await uow.session.execute(select(Item).where(Item.id == item_id))).scalar_one()
        assert row.unit == "byggeri"
    assert r.headers["location"].startswith("/ui/items?notice=")
    assert (await client.get(f"/ui/items/{item_id}")).status_code == 404  # not ours now
    other, other_csrf = await _browser(api, await _key(api, Role.CLERK, ("byggeri",), "ALA"))
    r = await other.post(f"/ui/items/{item_id}/done", data={"csrf": other_csrf})
    assert r.status_code == 303
    assert "ALA" in (await other.get(f"/ui/items/{item_id}")).text
    # A CSRF token of one session is worthless in another.
    assert (await other.post(f"/ui/items/{item_id}/release",
                             data={"csrf": csrf})).status_code == 403
    await client.aclose()
    await other.aclose()


async def test_rule_errors_next_to_the_field_and_dry_run(api: ClerkApi) -> None:
    await api.mail("affald")
    admin, csrf = await _browser(api, await _key(api, Role.ADMINISTRATOR, name="ops"))
    r = await admin.post("/ui/rules/save", data={
        "csrf": csrf, "name": "carport", "when": "keywords_any: [carport]",
        "then": "route: ingen-enhed", "op": "save"})
    assert r.status_code == 422
    assert 'id="then-error"' in r.text and 'aria-describedby="then-error"' in r.text
    r = await admin.post("/ui/rules/save", data={
        "csrf": csrf, "name": "carport", "when": "keywords_any: [carport", "then": "route: x",
        "op": "save"})
    assert r.status_code == 422 and 'id="when-error"' in r.text
    good = {"csrf": csrf, "name": "carport", "when": "keywords_any: [carport]",
            "then": "route: byggeri", "priority": "5"}
    r = await admin.post("/ui/rules/save", data={**good, "op": "dryrun"})
    assert r.status_code == 200 and 'id="dry-summary"' in r.text
    r = await admin.post("/ui/rules/save", data={**good, "op": "save"})
    assert r.status_code == 303
    rules = (await admin.get("/ui/rules")).text
    assert 'data-rule="carport"' in rules
    r = await admin.post("/ui/rules/toggle/carport", data={"csrf": csrf, "enabled": "true"})
    assert r.status_code == 303
    history = (await admin.get("/ui/rules/history?rule=carport")).text
    assert "carport" in history and "<ins>" in history
    await admin.aclose()


async def test_dashboard_audit_and_csv(api: ClerkApi) -> None:
    await api.mail("affald")
    auditor, _ = await _browser(api, await _key(api, Role.AUDITOR, name="rev"))
    dash = await auditor.get("/ui/")
    assert dash.status_code == 200 and "<svg" in dash.text and "email: 1" in dash.text
    assert 'id="queue-hours"' in dash.text and 'id="latency-hours"' in dash.text
    audit = await auditor.get("/ui/audit?action=&date_from=&item_id=junk")
    assert audit.status_code == 200 and 'id="chain" class="ok"' in audit.text
    csv = await auditor.get("/ui/audit.csv?action=claimed")
    assert csv.text.startswith("seq,at,action")
    await auditor.aclose()


async def test_english_and_catalogue_complete() -> None:
    used = set()
    for template in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r'_\("([^"]+)"', template.read_text(encoding="utf-8")))
        used |= set(re.findall(r"_\('([^']+)'", template.read_text(encoding="utf-8")))
    missing = {u for u in used if u not in EN}
    assert not missing, missing


def test_hourly_latency_and_waiting() -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    created = {"a": since + timedelta(minutes=10), "b": since + timedelta(minutes=20),
               "c": since + timedelta(hours=5)}
    decided = {"a": since + timedelta(minutes=10, seconds=4),
               "b": since + timedelta(hours=2, minutes=20)}
    out = hourly(since, created, decided)
    latency = [b["value"] for b in out["latency_hours"]["bars"]]
    assert latency[0] == round((4 + 7200) / 2) and latency[5] == 0
    waiting = [b["value"] for b in out["queue_hours"]["bars"]]
    assert waiting[:6] == [1, 1, 0, 0, 0, 1] and waiting[-1] == 1  # c is never decided


def test_outcome_and_bars() -> None:
    assert outcome("failed", None, "hovedpost") == "failed"
    assert outcome("triage", {"outcome": "triage"}, "hovedpost") == "triage"
    assigned = {"outcome": "routed", "rerouted": {"from_unit": "hovedpost"}}
    assert outcome("done", assigned, "hovedpost") == "triage"
    moved = {"outcome": "routed", "rerouted": {"from_unit": "affald"}}
    assert outcome("routed", moved, "hovedpost") == "auto"  # routed, then corrected
    assert outcome("done", {"outcome": "routed"}, "hovedpost") == "auto"
    assert outcome("received", None, "hovedpost") is None
    chart = bars([("a", 2), ("b", 4)], width=100)
    assert [b["w"] for b in chart["bars"]] == [50, 100]


def test_cookie_signature_and_expiry() -> None:
    s = Settings(ui_session_secret="k" * 32)  # type: ignore[arg-type]
    made = ui_session.new_session(s, uuid.uuid4())
    cookie = ui_session.encode(s, made)
    assert ui_session.decode(s, cookie) == made
    assert ui_session.decode(s, cookie, now=made.expires + 1) is None
    other = Settings(ui_session_secret="z" * 32)  # type: ignore[arg-type]
    assert ui_session.decode(other, cookie) is None
    assert ui_session.decode(s, "garbage") is None


class _Page(HTMLParser):
    """Collects what the accessibility checks look at."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[str] = []
        self.labels: set[str] = set()
        self.h1 = 0
        self.lang = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang") or ""
        if tag == "h1":
            self.h1 += 1
        if tag == "label" and a.get("for"):
            self.labels.add(a["for"] or "")
        if tag in ("input", "select", "textarea") and a.get("type") != "hidden":
            self.fields.append(a.get("id") or f"<{tag} name={a.get('name')} without id>")


async def test_every_page_has_labels_one_heading_and_a_language(api: ClerkApi) -> None:
    item = await api.mail("affald")
    await api.mail("hovedpost", ItemState.TRIAGE)
    clerk, _ = await _browser(api, await _key(api, Role.CLERK, ("affald",)))
    admin, _ = await _browser(api, await _key(api, Role.ADMINISTRATOR, name="ops"))
    auditor, _ = await _browser(api, await _key(api, Role.AUDITOR, name="rev"))
    pages = [(clerk, "/ui/login"), (clerk, "/ui/items"), (clerk, f"/ui/items/{item}"),
             (clerk, "/ui/triage"), (admin, "/ui/rules"), (admin, "/ui/rules/new"),
             (admin, "/ui/rules/history"), (admin, "/ui/mailboxes"),
             (admin, "/ui/deadletters"), (admin, "/ui/"), (auditor, "/ui/audit"),
             (clerk, "/ui/lang/en?next=/ui/items")]
    for client, url in pages:
        r = await client.get(url, follow_redirects=True)
        assert r.status_code == 200, url
        page = _Page()
        page.feed(r.text)
        assert page.h1 == 1 and page.lang in ("da", "en"), url
        unlabelled = [f for f in page.fields if f not in page.labels]
        assert not unlabelled, (url, unlabelled)
    assert 'lang="en"' in r.text and "My unit&#39;s items" in r.text
    for client in (clerk, admin, auditor):
        await client.aclose()


def _luminance(colour: str) -> float:
    rgb = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_colours_meet_wcag_aa_contrast() -> None:
    css = (TEMPLATES.parent / "static" / "ui.css").read_text(encoding="utf-8")
    var = dict(re.findall(r"--([a-z]+):\s*(#[0-9a-fA-F]{6})", css))
    for fg in ("ink", "accent", "muted", "bad", "ok"):
        assert _contrast(var[fg], var["paper"]) >= 4.5, fg
    assert _contrast("#ffffff", var["accent"]) >= 4.5  # button text
    assert _contrast(var["ok"], "#eef6ef") >= 4.5  # notices
