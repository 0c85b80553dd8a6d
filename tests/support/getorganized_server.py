"""A local GetOrganized for tests, following its REST API under `/_goapi/` as the municipal
clients call it: `Cases/FindByCaseProperties` ({"FieldProperties": [{"InternalName", "Value"}],
"CaseTypePrefixes": [...]} -> {"CasesInfo": [...]}), `Cases` ({"CaseTypePrefix",
"MetadataXml": "<z:row ows_Title=... />"} -> {"CaseID"}), `Documents/AddToDocumentLibrary`
({"bytes": [ints], "CaseId", "ListName", "FolderPath", "FileName", "Metadata", "Overwrite"} ->
{"DocId"}) and `Documents/Finalize/ByDocumentId` ({"DocId"}). HTTP Basic authentication.

Like SharePoint underneath, a file uploaded again under the same name in the same case's
library is the same document (a new version, same DocId) when Overwrite is true; a finalised
document cannot be overwritten. Failure injection as in sbsys_server.
"""

from __future__ import annotations

import base64
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.sbsys_server import Faults, ThreadedServer

USERNAME, PASSWORD = "svc-postfordeler", "go-hemmelig"


def parse_row(xml: str) -> dict[str, str]:
    return dict(ET.fromstring(xml).attrib)


class GetOrganizedServer:
    def __init__(self) -> None:
        self.faults = Faults()
        self.cases: list[dict[str, Any]] = []
        self.documents: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadedServer(Starlette(routes=[
            Route("/_goapi/Cases/FindByCaseProperties", self.find, methods=["POST"]),
            Route("/_goapi/Cases", self.create_case, methods=["POST"]),
            Route("/_goapi/Documents/AddToDocumentLibrary", self.add, methods=["POST"]),
            Route("/_goapi/Documents/Finalize/ByDocumentId", self.finalize, methods=["POST"]),
        ]))

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> GetOrganizedServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def add_case(self, case_id: str, title: str, status: str = "Åben",
                 **fields: str) -> dict[str, Any]:
        case = {"ows_CaseID": case_id, "ows_Title": title, "ows_CaseStatus": status, **fields}
        self.cases.append(case)
        return case

    async def _guard(self, request: Request) -> Response | None:
        if (failed := await self.faults.before()) is not None:
            return failed
        expected = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return Response("401 UNAUTHORIZED", status_code=401,
                            headers={"WWW-Authenticate": 'Basic realm="GetOrganized"'})
        return None

    async def find(self, request: Request) -> Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        body = await request.json()
        props = body.get("FieldProperties")
        if not isinstance(props, list) or not all("InternalName" in p for p in props):
            return JSONResponse({"Message": "FieldProperties required"}, 400)
        prefixes = body.get("CaseTypePrefixes") or []
        found = [c for c in self.cases
                 if (not prefixes or c["ows_CaseID"].split("-")[0] in prefixes)
                 and all(c.get(p["InternalName"]) == p.get("Value") for p in props)]
        limit = int(body.get("ReturnCasesNumber") or 100)
        return JSONResponse({"CasesInfo": [
            {"CaseID": c["ows_CaseID"], "Title": c["ows_Title"],
             "CaseStatus": c["ows_CaseStatus"]} for c in found[:limit]]})

    async def create_case(self, request: Request) -> Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        body = await request.json()
        prefix = body.get("CaseTypePrefix")
        try:
            fields = parse_row(body.get("MetadataXml") or "")
        except ET.ParseError:
            return JSONResponse({"Message": "MetadataXml is not valid XML"}, 400)
        if not prefix or not fields.get("ows_Title"):
            return JSONResponse({"Message": "CaseTypePrefix and ows_Title are required"}, 400)
        with self._lock:
            case_id = f"{prefix}-{datetime.now(UTC):%Y}-{len(self.cases) + 1:06d}"
            self.add_case(case_id, fields.pop("ows_Title"),
                          fields.pop("ows_CaseStatus", "Åben"), **fields)
        return self.faults.after(JSONResponse({"CaseID": case_id,
                                               "CaseRelativeUrl": f"cases/{prefix}/{case_id}"}))

    async def add(self, request: Request) -> Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        body = await request.json()
        case = next((c for c in self.cases if c["ows_CaseID"] == body.get("CaseId")), None)
        if case is None:
            return JSONResponse({"Message": f"Case {body.get('CaseId')} not found"}, 404)
        if case["ows_CaseStatus"] != "Åben":
            return JSONResponse({"Message": "The case is closed"}, 400)
        data = bytes(body.get("bytes") or [])
        name = body.get("FileName")
        if not data or not name:
            return JSONResponse({"Message": "bytes and FileName are required"}, 400)
        meta = parse_row(body["Metadata"]) if body.get("Metadata") else {}
        with self._lock:
            same = next((d for d in self.documents if d["CaseId"] == case["ows_CaseID"]
                         and d["ListName"] == body.get("ListName") and d["FileName"] == name),
                        None)
            if same is not None and not body.get("Overwrite"):
                return JSONResponse({"Message": "A file with that name already exists"}, 409)
            if same is not None and same["Finalized"]:
                return JSONResponse({"Message": "The document is finalized"}, 423)
            if same is not None:
                same.update(Data=data, Metadata=meta, Versions=same["Versions"] + 1)
                doc = same
            else:
                doc = {"DocId": 14000 + len(self.documents), "CaseId": case["ows_CaseID"],
                       "ListName": body.get("ListName"), "FileName": name, "Data": data,
                       "Metadata": meta, "Finalized": False, "Versions": 1}
                self.documents.append(doc)
        return self.faults.after(JSONResponse({"DocId": doc["DocId"]}))

    async def finalize(self, request: Request) -> Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        body = await request.json()
        doc = next((d for d in self.documents if d["DocId"] == body.get("DocId")), None)
        if doc is None:
            return JSONResponse({"Message": "Document not found"}, 404)
        doc["Finalized"] = True
        return self.faults.after(Response(status_code=200))


@pytest.fixture
def getorganized_server() -> Iterator[GetOrganizedServer]:
    server = GetOrganizedServer().start()
    try:
        yield server
    finally:
        server.stop()
