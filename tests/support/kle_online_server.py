"""A local KLE-online (KL's REST service for the KLE plan) for tests.

It follows what the public clients of `api.kle-online.dk` show (OS2 projects, KITOS, OS2mo's
KLE import): `GET /resources/kle/emneplan` answers the whole plan as XML (root
`<KLE-Emneplan>`, KL's "REST fuld" schema, `application/xml`), `?udgaaede=true` keeps the
numbers no longer in use (without it, numbers marked `Historisk` are left out: a guess from
KITOS calling the plain URL for "all active KLE numbers"), and
`GET /resources/kle/handlingsfacetter` answers `<KLE-Handlingsfacetter>`.
No client sends credentials; a server given a token demands it as a bearer token (401
otherwise), the scheme the adapter offers for a municipality's own access.

It can be told to answer a given status, to be slow, to send something that is not the plan,
or to leave out Content-Length (a chunked answer).
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET  # noqa: S405 - the test's own fixtures
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.support.sbsys_server import ThreadedServer

XML = "application/xml; charset=utf-8"
FACETTER = """<?xml version="1.0" encoding="UTF-8"?>
<KLE-Handlingsfacetter><UdgivelsesDato>{published}</UdgivelsesDato>
<HandlingsfacetKategori><HandlingsfacetKategoriNr>G</HandlingsfacetKategoriNr>
<HandlingsfacetKategoriTitel>Generelle sager</HandlingsfacetKategoriTitel>
<HandlingsfacetKategoriAdministrativInfo><OprettetDato>2003-01-01</OprettetDato>
</HandlingsfacetKategoriAdministrativInfo>
<Handlingsfacet><HandlingsfacetNr>G01</HandlingsfacetNr>
<HandlingsfacetTitel>Generelle sager</HandlingsfacetTitel>
<HandlingsfacetAdministrativInfo><OprettetDato>2003-01-01</OprettetDato>
</HandlingsfacetAdministrativInfo><UUID>5b4c7a3e-0000-4000-8000-000000000001</UUID>
</Handlingsfacet></HandlingsfacetKategori></KLE-Handlingsfacetter>"""


@dataclass
class KleOnlineBehaviour:
    token: str | None = None
    status: int | None = None  # answer every request with this status instead
    delay: float = 0.0
    body: bytes | None = None  # send this instead of the plan
    content_type: str = XML
    chunked: bool = False  # no Content-Length


def without_expired(plan: bytes) -> bytes:
    """The plan without numbers whose AdministrativInfo says Historisk (expired or moved)."""
    root = ET.fromstring(plan)  # noqa: S314 - see the import

    def prune(parent: ET.Element) -> None:
        for child in list(parent):
            if child.tag in ("Hovedgruppe", "Gruppe", "Emne"):
                if child.find(f"{child.tag}AdministrativInfo/Historisk") is not None:
                    parent.remove(child)
                else:
                    prune(child)

    prune(root)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8")


class KleOnlineServer(ThreadedServer):
    def __init__(self, plan: bytes, behaviour: KleOnlineBehaviour | None = None) -> None:
        self.plan, self.active = plan, without_expired(plan)
        self.behaviour = behaviour or KleOnlineBehaviour()
        self.requests: list[dict[str, str]] = []
        published = ET.fromstring(plan).findtext("UdgivelsesDato")  # noqa: S314
        self.facetter = FACETTER.format(published=published).encode()
        super().__init__(Starlette(routes=[
            Route("/resources/kle/emneplan", self.emneplan),
            Route("/resources/kle/handlingsfacetter", self.handlingsfacetter)]))

    @property
    def base(self) -> str:
        return f"{self.url}/resources/kle"

    async def _refused(self, request: Request) -> Response | None:
        self.requests.append({"path": request.url.path, "query": request.url.query,
                              "authorization": request.headers.get("authorization", "")})
        b = self.behaviour
        if b.delay:
            await asyncio.sleep(b.delay)
        if b.token and request.headers.get("authorization") != f"Bearer {b.token}":
            return Response("Unauthorized", 401, {"WWW-Authenticate": "Bearer"})
        if b.status is not None:
            return Response(f"status {b.status}", b.status)
        return None

    def _answer(self, data: bytes) -> Response:
        b = self.behaviour
        data = b.body if b.body is not None else data
        if not b.chunked:
            return Response(data, media_type=b.content_type)

        async def pieces() -> AsyncIterator[bytes]:
            for start in range(0, len(data), 65536):
                yield data[start:start + 65536]

        return StreamingResponse(pieces(), media_type=b.content_type)

    async def emneplan(self, request: Request) -> Response:
        refused = await self._refused(request)
        if refused is not None:
            return refused
        expired = request.query_params.get("udgaaede", "false").lower() == "true"
        return self._answer(self.plan if expired else self.active)

    async def handlingsfacetter(self, request: Request) -> Response:
        return await self._refused(request) or self._answer(self.facetter)
