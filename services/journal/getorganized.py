"""GetOrganized through its REST API under `/_goapi/`: find cases by properties
(`Cases/FindByCaseProperties`), create a case with metadata (`Cases`), add a file to the case's
document library (`Documents/AddToDocumentLibrary`) and finalise it by document id
(`Documents/Finalize/ByDocumentId`). Metadata travels as SharePoint `<z:row ows_...=""/>` XML.

Idempotency: a case carries its key in a case column (`key_field`) and is looked up by it
before creating; a document's file name is derived from its key and uploaded with Overwrite, so
a repeated upload lands on the same document (a new version of it), never a second one.
Authentication: HTTP Basic (GetOrganized behind IIS also offers NTLM; put a proxy in front).
"""

from __future__ import annotations

import hashlib
from typing import Any
from xml.sax.saxutils import quoteattr

import httpx

from shared.errors import PermanentError
from shared.esdh import (
    CaseRef,
    DocumentRef,
    GetOrganizedConfig,
    NewCase,
    NewDocument,
    cpr_or_cvr,
)
from shared.personal import scrub_file_name

from .http import call
from .titles import safe_title


def metadata_xml(fields: dict[str, str]) -> str:
    attrs = "".join(f" {name}={quoteattr(value)}" for name, value in fields.items() if value)
    return f'<z:row xmlns:z="#RowsetSchema"{attrs}/>'


def file_name(idempotency_key: str, original: str, n: int = 0) -> str:
    stem = hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]
    # The name is shown in the case's library like a title: no CPR numbers there either.
    safe = "".join(c if c.isalnum() or c in "._-" else "_"
                   for c in scrub_file_name(original))[-80:]
    return f"pf-{stem}-{n}-{safe}"


def _ref(info: dict[str, Any]) -> CaseRef:
    return CaseRef(case_number=str(info["CaseID"]), title=str(info.get("Title") or ""),
                   status="open" if info.get("CaseStatus", "Åben") == "Åben" else "closed")


class GetOrganized:
    def __init__(self, config: GetOrganizedConfig,
                 client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self.client = client or httpx.AsyncClient(
            timeout=config.timeout, auth=httpx.BasicAuth(config.username, config.password()))
        self.base = config.base_url.rstrip("/")

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _post(self, path: str, what: str, body: dict[str, Any]) -> Any:
        response = await call(self.client, "POST", f"{self.base}/_goapi/{path}", what=what,
                              json=body)
        return response.json() if response.content else {}

    async def _find(self, field: str, value: str, prefix: str | None = None,
                    limit: int = 100) -> list[dict[str, Any]]:
        body = await self._post("Cases/FindByCaseProperties", "GetOrganized case search", {
            "FieldProperties": [{"InternalName": field, "Value": value}],
            "CaseTypePrefixes": [prefix or self.config.case_type_prefix],
            "ReturnCasesNumber": limit})
        found: list[dict[str, Any]] = body.get("CasesInfo") or []
        return found

    async def find_case(self, case_number: str) -> CaseRef | None:
        prefix = case_number.split("-", 1)[0]  # GetOrganized numbers start with the case type
        found = [c for c in await self._find("ows_CaseID", case_number, prefix, 1)
                 if c.get("CaseID") == case_number]
        return _ref(found[0]) if found else None

    async def search_cases(self, party: str) -> list[CaseRef]:
        kind, number = cpr_or_cvr(party)
        field = "ows_CCMContactData_CPR" if kind == "cpr" else "ows_CCMContactData_CVR"
        return [_ref(c) for c in await self._find(field, number.replace("-", ""))]

    async def create_case(self, case: NewCase, *, idempotency_key: str) -> CaseRef:
        existing = await self._find(self.config.key_field, idempotency_key, limit=1)
        if existing:
            return _ref(existing[0])
        fields = {"ows_Title": case.title[:250] or "Henvendelse", "ows_CaseStatus": "Åben",
                  "ows_CCMKLE": case.kle or "", "ows_CCMHandlingsfacet": case.facet,
                  "ows_CCMOrganisation": case.unit or "", "ows_CaseOwner": case.clerk or "",
                  self.config.key_field: idempotency_key}
        if case.party:
            try:
                kind, number = cpr_or_cvr(case.party)
                fields[f"ows_CCMContactData_{kind.upper()}"] = number.replace("-", "")
            except ValueError:
                pass
        body = await self._post("Cases", "GetOrganized create case", {
            "CaseTypePrefix": self.config.case_type_prefix,
            "MetadataXml": metadata_xml(fields), "ReturnWhenCaseFullyCreated": True})
        return CaseRef(case_number=str(body["CaseID"]), title=fields["ows_Title"],
                       unit=case.unit, clerk=case.clerk)

    async def add_document(self, case_number: str, document: NewDocument, *,
                           idempotency_key: str) -> DocumentRef:
        if not document.files:
            raise PermanentError("nothing to journalise: the document has no file")
        doc_ids = []
        for n, f in enumerate(document.files):
            title = document.title if n == 0 else safe_title(f"Bilag: {f.name}", "Bilag")
            meta = {"ows_Title": title[:250], "ows_CCMMustBeOnPostList": "0",
                    "ows_Dokumentart": "Indgående"}
            if document.confidential and self.config.confidential_field:
                meta[self.config.confidential_field] = self.config.confidential_value
            body = await self._post("Documents/AddToDocumentLibrary",
                                    "GetOrganized add document", {
                "bytes": list(f.data), "CaseId": case_number,
                "ListName": self.config.document_list, "FolderPath": "",
                "FileName": file_name(idempotency_key, f.name, n),
                "Metadata": metadata_xml(meta),
                "Overwrite": True})
            doc_ids.append(str(body["DocId"]))
        # The original is the document; attachments are filed beside it on the same case.
        return DocumentRef(doc_ids[0], case_number)

    async def journalise(self, document_id: str) -> None:
        await self._post("Documents/Finalize/ByDocumentId", "GetOrganized finalise",
                         {"DocId": int(document_id)})
