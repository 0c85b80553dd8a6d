"""`postfordeler kle import --url` against a local KLE-online (tests/support/kle_online_server.py):
the same kle.json as the XML file gives, KL's REST extras (keywords) taken along, expired
numbers only on request, a token when the municipality has one, and one clear line (exit 2,
nothing written) for refusal, an unreachable or slow service and an answer that is not a plan.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from postfordeler.cli import app
from shared.settings import DEMO_TENANT_DIR
from tests.conftest import CORPUS, free_port, unavailable
from tests.support.kle_online_server import KleOnlineBehaviour, KleOnlineServer

FULL_PLAN = CORPUS / "kle" / "KLE-Emneplan_Version2-0_2015-08-01.xml"
UUID = "0c7e8f6a-1d2b-4c3d-8e9f-{:012x}"


def _admin(created: str, expired: str | None = None) -> str:
    gone = f"<Historisk><UdgaaetDato>{expired}</UdgaaetDato></Historisk>" if expired else ""
    return f"<OprettetDato>{created}</OprettetDato>{gone}"


def rest_plan() -> bytes:
    """A small plan in KL's "REST fuld" form (UUIDs, Stikord), made up here, not KL's text."""
    def emne(nr: str, title: str, words: tuple[str, ...], n: int, expired: str | None = None
             ) -> str:
        stikord = "".join(f"<EmneStikord><Orden>{i}</Orden><Tekst>{w}</Tekst></EmneStikord>"
                          for i, w in enumerate(words, 1))
        return (f"<Emne><EmneNr>{nr}</EmneNr><EmneTitel>{title}</EmneTitel>"
                f"<EmneVejledning><VejledningTekst><p>Om {title.lower()}.</p></VejledningTekst>"
                f"</EmneVejledning><EmneAdministrativInfo>{_admin('2010-01-01', expired)}"
                f"</EmneAdministrativInfo>{stikord}"
                "<EmneOgHandlingsfacetStikord><Orden>1</Orden><Tekst>klage over "
                f"{title.lower()}</Tekst><HandlingsfacetNr>G01</HandlingsfacetNr>"
                f"</EmneOgHandlingsfacetStikord><UUID>{UUID.format(n)}</UUID></Emne>")

    return f"""<?xml version="1.0" encoding="UTF-8"?>
<KLE-Emneplan><UdgivelsesDato>2026-11-01</UdgivelsesDato>
<Hovedgruppe><HovedgruppeNr>05</HovedgruppeNr><HovedgruppeTitel>Veje og trafik</HovedgruppeTitel>
<HovedgruppeVejledning><VejledningTekst><p>Veje.</p></VejledningTekst></HovedgruppeVejledning>
<HovedgruppeAdministrativInfo>{_admin('2003-01-01')}</HovedgruppeAdministrativInfo>
<HovedgruppeStikord><Orden>1</Orden><Tekst>vej</Tekst></HovedgruppeStikord>
<UUID>{UUID.format(1)}</UUID>
<Gruppe><GruppeNr>05.09</GruppeNr><GruppeTitel>Parkering</GruppeTitel>
<GruppeAdministrativInfo>{_admin('2003-01-01')}</GruppeAdministrativInfo>
<GruppeStikord><Orden>1</Orden><Tekst>p-plads</Tekst></GruppeStikord>
<UUID>{UUID.format(2)}</UUID>
{emne("05.09.08", "Parkeringsafgifter", ("parkeringsafgift", "p-bøde"), 3)}
{emne("05.09.99", "Gamle p-skiver", ("p-skive",), 4, expired="2020-01-01")}
</Gruppe></Hovedgruppe></KLE-Emneplan>""".encode()


@pytest.fixture
def tenant(tmp_path: Path) -> Path:
    return Path(shutil.copytree(DEMO_TENANT_DIR, tmp_path / "tenant"))


@pytest.fixture
def serve() -> Iterator[list[KleOnlineServer]]:
    started: list[KleOnlineServer] = []
    yield started
    for server in started:
        server.stop()


def start(started: list[KleOnlineServer], plan: bytes, **behaviour: object) -> KleOnlineServer:
    server = KleOnlineServer(plan, KleOnlineBehaviour(**behaviour))  # type: ignore[arg-type]
    server.start()
    started.append(server)
    return server


def kle_import(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, ["kle", "import", *args], env=env)


def entries(tenant: Path) -> dict[str, dict[str, object]]:
    plan = json.loads((tenant / "kle.json").read_text(encoding="utf-8"))
    return {e["code"]: e for e in plan["entries"]}


def test_the_service_gives_the_same_kle_json_as_kls_file(
        tenant: Path, tmp_path: Path, serve: list[KleOnlineServer]) -> None:
    if not FULL_PLAN.exists():
        unavailable(f"KL's plan at {FULL_PLAN}")
    server = start(serve, FULL_PLAN.read_bytes())
    for expired in ((), ("--include-expired",)):
        from_file = kle_import(str(FULL_PLAN), "--tenant", str(tenant), *expired)
        assert from_file.exit_code == 0, from_file.output
        expected = (tenant / "kle.json").read_bytes()
        (tenant / "kle.json").unlink()
        online = kle_import("--url", server.base, "--tenant", str(tenant), *expired)
        assert online.exit_code == 0, online.output
        same = (tenant / "kle.json").read_bytes() == expected  # no 3 MB diff when not
        assert same, "not the kle.json the file gives"
        assert "KLE-online" in online.stderr  # the download's progress bar
    # always with the numbers no longer in use, left out (or not) as for the file
    assert [r["query"] for r in server.requests] == ["udgaaede=true"] * 2
    assert {r["path"] for r in server.requests} == {"/resources/kle/emneplan"}
    assert len(entries(tenant)) > len(json.loads(expected)["entries"]) * 0.9


def test_keywords_come_along_and_expired_numbers_only_on_request(
        tenant: Path, serve: list[KleOnlineServer]) -> None:
    server = start(serve, rest_plan(), chunked=True)  # no length: no bar, still imported
    done = kle_import("--tenant", str(tenant), "--url", server.base + "/emneplan")
    assert done.exit_code == 0, done.output
    assert "imported KLE plan of 2026-11-01: 3 numbers" in done.stdout
    plan = entries(tenant)
    assert set(plan) == {"05", "05.09", "05.09.08"}
    assert plan["05.09.08"]["keywords"] == ["parkeringsafgift", "p-bøde",
                                            "klage over parkeringsafgifter"]
    assert plan["05.09"]["keywords"] == ["p-plads"]
    assert plan["05.09.08"]["guidance"] == "Om parkeringsafgifter."
    done = kle_import("--tenant", str(tenant), "--url", server.base, "--include-expired")
    assert done.exit_code == 0 and "05.09.99" in entries(tenant)


def test_a_token_is_sent_when_the_municipality_has_one(
        tenant: Path, serve: list[KleOnlineServer]) -> None:
    server = start(serve, rest_plan(), token="kommunens-noegle-1")
    refused = kle_import("--tenant", str(tenant), "--url", server.base)
    assert refused.exit_code == 2
    assert "refused access (HTTP 401)" in refused.stderr
    unset = kle_import("--tenant", str(tenant), "--url", server.base,
                       "--token-env", "PF_TEST_KLE_TOKEN_UNSET")
    assert unset.exit_code == 2 and "$PF_TEST_KLE_TOKEN_UNSET is not set" in unset.stderr
    assert not (tenant / "kle.json").exists()
    done = kle_import("--tenant", str(tenant), "--url", server.base, "--token-env",
                      "PF_TEST_KLE_TOKEN", env={"PF_TEST_KLE_TOKEN": "kommunens-noegle-1"})
    assert done.exit_code == 0, done.output
    assert server.requests[-1]["authorization"] == "Bearer kommunens-noegle-1"
    assert "kommunens-noegle-1" not in done.output
    odd = kle_import("--tenant", str(tenant), "--url", server.base, "--token-env",
                     "PF_TEST_KLE_TOKEN", env={"PF_TEST_KLE_TOKEN": "nøgle"})
    assert odd.exit_code == 2 and "characters a header cannot carry" in odd.stderr
    sent = len(server.requests)
    clear = kle_import("--tenant", str(tenant), "--url", "http://kle.example.invalid/resources/kle",
                       "--token-env", "PF_TEST_KLE_TOKEN",
                       env={"PF_TEST_KLE_TOKEN": "kommunens-noegle-1"})
    assert clear.exit_code == 2 and "only sent over https" in clear.stderr, clear.output
    assert "kommunens-noegle-1" not in clear.output and len(server.requests) == sent


@pytest.mark.parametrize(("behaviour", "args", "message"), [
    ({"status": 503}, (), "answered HTTP 503; try again later"),
    ({"status": 404}, (), "has no plan at"),
    ({"delay": 3.0}, ("--timeout", "1"), "did not answer in time"),
    ({"body": b"<html><body>Vedligehold</body></html>", "content_type": "text/html"}, (),
     "answered text/html, not XML"),
    ({"body": b"<KLE-Handlingsfacetter/>"}, (), "root element is <KLE-Handlingsfacetter>"),
    ({"body": b"<KLE-Emneplan><Hovedgruppe>"}, (), "not KLE-Emneplan XML"),
    ({"body": b'{"emner": []}', "content_type": "application/json"}, (),
     "answered application/json, not XML"),
])
def test_failures_are_one_clear_line_and_nothing_written(
        tenant: Path, serve: list[KleOnlineServer], behaviour: dict[str, object],
        args: tuple[str, ...], message: str) -> None:
    server = start(serve, rest_plan(), **behaviour)
    done = kle_import("--tenant", str(tenant), "--url", server.base, *args)
    assert done.exit_code == 2, done.output
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: KLE-online") and message in lines[-1], done.stderr
    assert "Traceback" not in done.output
    assert not (tenant / "kle.json").exists()


def test_an_unreachable_service_and_a_wrong_call(tenant: Path) -> None:
    done = kle_import("--tenant", str(tenant), "--url", f"http://127.0.0.1:{free_port()}")
    assert done.exit_code == 2 and "is unreachable" in done.stderr
    both = kle_import(str(FULL_PLAN), "--tenant", str(tenant), "--url", "http://x.invalid")
    assert both.exit_code == 2 and "either an XML file or --url" in both.stderr
