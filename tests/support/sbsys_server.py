"""A local SBSYS (SBSIP REST API) for tests, following the published endpoints and the shapes
municipal clients use: an OAuth2 token endpoint (Keycloak style, client credentials), then
with a bearer token `POST api/sag/search` ({"Results": [...]} with paging fields),
`POST api/person/search` / `api/firma/search` / `api/bruger/search` (lists),
`POST api/sag/template` (a case from a template; its `Emne` is the KLE number, kept on the
case), `GET api/sag/{id}/dokumenter` and the multipart `POST api/dokument/journaliser` (a "json"
part with SagID and metadata, `ErBeskyttet` for a protected document, "file" parts).

Like SBSYS it knows no idempotency keys: a repeated create makes a second case or document,
which is what the tests check the adapter avoids (it tags case titles and document
descriptions and searches for the tag; `SagsTitel` in a search matches as "contains",
ignoring case, as SBSYS's free-text criteria do). It can be told to be down (503), to lose the
answer to a request it carried out (the client sees 502), and to be slow.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.conftest import free_port

TOKEN_PATH = "/auth/realms/sbsip/protocol/openid-connect/token"
CLIENT_ID, CLIENT_SECRET = "postfordeler", "hemmelig-klient"
SEARCH_FIELDS = {"Nummer", "PrimaerPerson", "PrimaerFirma", "SagsTitel", "PageNumber", "PageSize"}


class ThreadedServer:
    """Runs an ASGI app with uvicorn in a thread on a free loopback port."""

    def __init__(self, app: Any) -> None:
        self.host, self.port = "127.0.0.1", free_port()
        self._server = uvicorn.Server(uvicorn.Config(app, host=self.host, port=self.port,
                                                     log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)


@dataclass
class Faults:
    """Failure injection shared by the local ESDH servers."""

    down: int = 0  # the next N API requests get 503 without being carried out
    lose: int = 0  # the next N creating requests are carried out, then answered with 502
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, name: str) -> bool:
        with self.lock:
            if getattr(self, name) > 0:
                setattr(self, name, getattr(self, name) - 1)
                return True
        return False

    async def before(self) -> Response | None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.take("down"):
            return JSONResponse({"Message": "Service Unavailable"}, status_code=503)
        return None

    def after(self, response: Response) -> Response:
        if self.take("lose"):
            return JSONResponse({"Message": "Bad Gateway"}, status_code=502)
        return response


def parse_multipart(content_type: str, body: bytes) -> list[tuple[str, str | None, str, bytes]]:
    """(name, filename, content type, data) of each part of a multipart/form-data body, bytes
    exactly as sent (RFC 7578; the email parser would re-encode message/rfc822 parts)."""
    boundary = email.message_from_string(f"Content-Type: {content_type}\r\n\r\n",
                                         policy=email.policy.HTTP).get_param("boundary")
    parts = []
    for chunk in body.split(b"--" + str(boundary).encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        headers = email.message_from_bytes(head + b"\r\n\r\n", policy=email.policy.HTTP)
        params = dict((headers.get_params(header="content-disposition") or [])[1:])
        parts.append((str(params.get("name", "")), params.get("filename"),
                      headers.get_content_type(), data.removesuffix(b"\r\n")))
    return parts


class SbsysServer:
    def __init__(self) -> None:
        self.faults = Faults()
        self.tokens: dict[str, float] = {}
        self.token_requests = 0
        self.cases: list[dict[str, Any]] = []
        self.documents: list[dict[str, Any]] = []
        self.persons = [{"Id": 501, "CprNummer": "010190-1234", "Navn": "Test Borger"}]
        self.firms = [{"Id": 601, "CvrNummer": "12345678", "Navn": "Test ApS"}]
        self.users = [{"Id": 7, "LogonId": "ALA", "Navn": "Amalie Larsen"},
                      {"Id": 8, "LogonId": "TBN", "Navn": "Tobias Bendtsen"}]
        self.templates = {1: "Borgerhenvendelse"}
        self._server = ThreadedServer(Starlette(routes=[
            Route(TOKEN_PATH, self.token, methods=["POST"]),
            Route("/api/sag/search", self.sag_search, methods=["POST"]),
            Route("/api/sag/template", self.sag_template, methods=["POST"]),
            Route("/api/sag/{id:int}/dokumenter", self.dokumenter, methods=["GET"]),
            Route("/api/person/search", self.person_search, methods=["POST"]),
            Route("/api/firma/search", self.firma_search, methods=["POST"]),
            Route("/api/bruger/search", self.bruger_search, methods=["POST"]),
            Route("/api/dokument/journaliser", self.journaliser, methods=["POST"]),
        ]))

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH

    def start(self) -> SbsysServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def add_case(self, nummer: str, titel: str, *, status: str = "Aktiv",
                 cpr: str | None = None) -> dict[str, Any]:
        sag = {"Id": 1000 + len(self.cases), "Nummer": nummer, "SagsTitel": titel,
               "SagsStatus": {"Navn": status}, "Behandler": {"Id": 7, "LogonId": "ALA"},
               "PrimaerPerson": {"CprNummer": cpr} if cpr else None, "PrimaerFirma": None}
        self.cases.append(sag)
        return sag

    # -- endpoints --------------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        self.token_requests += 1
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        token = secrets.token_urlsafe(24)
        self.tokens[token] = time.monotonic() + 300
        return JSONResponse({"access_token": token, "expires_in": 300, "token_type": "Bearer"})

    def _authorised(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme == "Bearer" and self.tokens.get(token, 0) > time.monotonic()

    async def _guard(self, request: Request) -> Response | None:
        if (failed := await self.faults.before()) is not None:
            return failed
        if not self._authorised(request):
            return JSONResponse({"Message": "Authorization has been denied"}, status_code=401)
        return None

    async def sag_search(self, request: Request) -> Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        query = await request.json()
        if not isinstance(query, dict) or set(query) - SEARCH_FIELDS:
            return JSONResponse({"Message": f"unknown search fields {sorted(query)}"}, 400)
        found = [s for s in self.cases if _matches(s, query)]
        size, page = int(query.get("PageSize", 20)), int(query.get("PageNumber", 1))
        return JSONResponse({"Results": found[(page - 1) * size:page * size],
                             "TotalNumberOfResults": len(found)})

    async def sag_template(self, request: Request) -> Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        body = await request.json()
        if not str(body.get("SagsTitel", "")).strip():
            return JSONResponse({"Message": "SagsTitel skal udfyldes"}, 400)
        if body.get("SkabelonId") not in self.templates:
            return JSONResponse({"Message": "Ukendt sagsskabelon"}, 400)
        kle = (body.get("Emne") or {}).get("Nummer") or "00.00.00"
        facet = (body.get("Handlingsfacet") or {}).get("Nummer") or "G01"
        serial = 1 + sum(1 for s in self.cases if s["Nummer"].startswith(f"{kle}-{facet}-"))
        sag = self.add_case(f"{kle}-{facet}-{serial}-{datetime.now(UTC):%y}", body["SagsTitel"])
        sag["Emne"], sag["Handlingsfacet"] = {"Nummer": kle}, {"Nummer": facet}
        user = next((u for u in self.users if u["Id"] == body.get("SagsBehandlerID")), None)
        if user:
            sag["Behandler"] = {"Id": user["Id"], "LogonId": user["LogonId"]}
        part = body.get("PrimaryPart")
        if part:
            person = next((p for p in self.persons if p["Id"] == part.get("PartId")), None)
            sag["PrimaerPerson"] = {"CprNummer": person["CprNummer"]} if person else None
        return self.faults.after(JSONResponse(sag))

    async def dokumenter(self, request: Request) -> Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        sag_id = request.path_params["id"]
        if not any(s["Id"] == sag_id for s in self.cases):
            return JSONResponse({"Message": "Sagen findes ikke"}, 404)
        return JSONResponse([{k: d[k] for k in ("Id", "Navn", "Beskrivelse", "DokumentArt",
                                                "ErBeskyttet")}
                             for d in self.documents if d["SagID"] == sag_id])

    async def _search(self, request: Request, rows: list[dict[str, Any]]) -> Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        query = await request.json()
        return JSONResponse([r for r in rows if all(r.get(k) == v for k, v in query.items())])

    async def person_search(self, request: Request) -> Response:
        return await self._search(request, self.persons)

    async def firma_search(self, request: Request) -> Response:
        return await self._search(request, self.firms)

    async def bruger_search(self, request: Request) -> Response:
        return await self._search(request, self.users)

    async def journaliser(self, request: Request) -> Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            return JSONResponse({"Message": "multipart/form-data expected"}, 415)
        parts = parse_multipart(ctype, await request.body())
        meta = [json.loads(data) for name, _, _, data in parts if name == "json"]
        files = [(fn, ct, data) for name, fn, ct, data in parts if name == "file" and fn]
        if len(meta) != 1 or not files:
            return JSONResponse({"Message": "a json part and a file part are required"}, 400)
        sag = next((s for s in self.cases if s["Id"] == meta[0].get("SagID")), None)
        if sag is None:
            return JSONResponse({"Message": "Sagen findes ikke"}, 404)
        if sag["SagsStatus"]["Navn"] != "Aktiv":
            return JSONResponse({"Message": "Sagen er afsluttet"}, 400)
        doc = {"Id": 9000 + len(self.documents), "SagID": sag["Id"],
               "Navn": meta[0].get("DokumentNavn"), "Beskrivelse": meta[0].get("Beskrivelse"),
               "DokumentArt": meta[0].get("DokumentArt"), "Journaliseret": True,
               "ErBeskyttet": bool(meta[0].get("ErBeskyttet", False)),
               "Filer": [{"Navn": fn, "ContentType": ct, "Data": data} for fn, ct, data in files]}
        self.documents.append(doc)
        return self.faults.after(JSONResponse({"Id": doc["Id"], "Navn": doc["Navn"],
                                               "SagID": sag["Id"]}))


def _matches(sag: dict[str, Any], query: dict[str, Any]) -> bool:
    if "Nummer" in query and sag["Nummer"] != query["Nummer"]:
        return False
    if "SagsTitel" in query and query["SagsTitel"].lower() not in sag["SagsTitel"].lower():
        return False
    for key, inner in (("PrimaerPerson", "CprNummer"), ("PrimaerFirma", "CvrNummer")):
        if key in query and (sag.get(key) or {}).get(inner) != query[key].get(inner):
            return False
    return True


@pytest.fixture
def sbsys_server() -> Iterator[SbsysServer]:
    server = SbsysServer().start()
    try:
        yield server
    finally:
        server.stop()
