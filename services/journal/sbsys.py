"""SBSYS through its REST API (SBSIP): an OAuth2 client-credentials token, case lookup and
search (`api/sag/search`), party and clerk lookup, a case from a case template
(`api/sag/template`) and the multipart upload `api/dokument/journaliser`, which files and
journalises a document in one call (so `journalise` has nothing left to do).

Idempotency: SBSYS takes no idempotency key, so the adapter puts a tag derived from the key
where SBSYS stores it and can find it again. A case's title ends with
"(Postfordeler PF-<ref>)" (the item's reference, as in its receipt), and before creating a
case the adapter searches `api/sag/search` by `SagsTitel` (a contains-search in SBSYS) for
that tag; when the answer to a create was lost, the retry finds the case instead of making a
second one. A document carries its tag in its description (`Beskrivelse`) and the case's
documents are looked up by it before uploading. The journal also records each call's result
under its key (see filing.py), so a retry continues, not repeats.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any

import httpx

from shared.errors import PermanentError, TransientError
from shared.esdh import CaseRef, DocumentRef, NewCase, NewDocument, SbsysConfig, cpr_or_cvr
from shared.personal import scrub_file_name

from .http import call
from .receipt_text import reference

INCOMING = {"Id": 1, "Navn": "Indgående"}


def _ref(sag: dict[str, Any]) -> CaseRef:
    behandler = sag.get("Behandler") or {}
    status = (sag.get("SagsStatus") or {}).get("Navn") or "Aktiv"
    return CaseRef(case_number=str(sag["Nummer"]), title=str(sag.get("SagsTitel") or ""),
                   unit=(sag.get("Ansaettelsessted") or {}).get("Navn"),
                   clerk=behandler.get("LogonId"),
                   status="open" if status == "Aktiv" else status.lower())


def key_tag(idempotency_key: str) -> str:
    return f"Postfordeler {idempotency_key}"


def case_tag(idempotency_key: str) -> str:
    """The tag a case's title carries: the item's reference for the journal's keys
    (`item:<uuid>:case`), which a clerk recognises from the receipt; otherwise a digest."""
    parts = idempotency_key.split(":")
    try:
        ref = reference(uuid.UUID(parts[1])) if parts[0] == "item" and len(parts) > 1 else ""
    except ValueError:
        ref = ""
    if not ref:
        ref = "PF-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:10].upper()
    return f"Postfordeler {ref}"


class Sbsys:
    def __init__(self, config: SbsysConfig, client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self.client = client or httpx.AsyncClient(timeout=config.timeout)
        self.base = config.base_url.rstrip("/")
        self._token: tuple[str, float] | None = None
        self._ids: dict[str, int] = {}  # case number -> SBSYS case id

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _bearer(self) -> dict[str, str]:
        if self._token is None or self._token[1] < time.monotonic():
            response = await call(self.client, "POST", self.config.token_url, what="SBSYS token",
                                  data={"grant_type": "client_credentials",
                                        "client_id": self.config.client_id,
                                        "client_secret": self.config.client_secret()})
            body = response.json()
            # Renew a little early, so a token never expires between check and use.
            expires = float(body.get("expires_in", 300)) * 0.8
            self._token = (str(body["access_token"]), time.monotonic() + expires)
        return {"Authorization": f"Bearer {self._token[0]}"}

    async def _api(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        for attempt in (1, 2):
            try:
                response = await call(self.client, method, f"{self.base}{path}", what=what,
                                      headers=await self._bearer(), **kwargs)
            except PermanentError as exc:
                if attempt == 1 and "HTTP 401" in str(exc):
                    self._token = None  # revoked or expired early: one new token, once
                    continue
                raise
            return response.json()
        raise TransientError(f"{what}: not authorised")  # pragma: no cover

    async def _search(self, criteria: dict[str, Any]) -> list[dict[str, Any]]:
        body = await self._api("POST", "/api/sag/search", "SBSYS case search",
                               json={**criteria, "PageNumber": 1, "PageSize": 100})
        results: list[dict[str, Any]] = body.get("Results", []) if isinstance(body, dict) else []
        for sag in results:
            self._ids[str(sag["Nummer"])] = int(sag["Id"])
        return results

    async def find_case(self, case_number: str) -> CaseRef | None:
        found = [s for s in await self._search({"Nummer": case_number})
                 if s.get("Nummer") == case_number]
        return _ref(found[0]) if found else None

    async def search_cases(self, party: str) -> list[CaseRef]:
        kind, number = cpr_or_cvr(party)
        criteria = ({"PrimaerPerson": {"CprNummer": number}} if kind == "cpr"
                    else {"PrimaerFirma": {"CvrNummer": number}})
        return [_ref(s) for s in await self._search(criteria)]

    async def _party(self, party: str | None) -> dict[str, Any] | None:
        if not party:
            return None
        try:
            kind, number = cpr_or_cvr(party)
        except ValueError:
            return None  # an e-mail address, say: the case gets no primary party
        path, field, part_type = (("/api/person/search", "CprNummer", "Person") if kind == "cpr"
                                  else ("/api/firma/search", "CvrNummer", "Firma"))
        found = await self._api("POST", path, "SBSYS party search", json={field: number})
        return {"PartId": int(found[0]["Id"]), "PartType": part_type} if found else None

    async def _clerk(self, initials: str | None) -> int | None:
        if not initials:
            return None
        users = await self._api("POST", "/api/bruger/search", "SBSYS user search",
                                json={"LogonId": initials})
        exact = [u for u in users if str(u.get("LogonId", "")).lower() == initials.lower()]
        return int(exact[0]["Id"]) if exact else None

    async def create_case(self, case: NewCase, *, idempotency_key: str) -> CaseRef:
        tag = case_tag(idempotency_key)
        for sag in await self._search({"SagsTitel": tag}):
            if str(sag.get("SagsTitel") or "").endswith(f"({tag})"):
                return _ref(sag)  # created before; the answer was lost
        suffix = f" ({tag})"
        title = (case.title.strip() or "Henvendelse")[:250 - len(suffix)] + suffix
        body: dict[str, Any] = {"SagsTitel": title, "SkabelonId": self.config.template_id}
        if case.kle:
            body["Emne"] = {"Nummer": case.kle}
        body["Handlingsfacet"] = {"Nummer": case.facet}
        if (clerk := await self._clerk(case.clerk)) is not None:
            body["SagsBehandlerID"] = clerk
        if (part := await self._party(case.party)) is not None:
            body["PrimaryPart"], body["Parts"] = part, [part]
        sag = await self._api("POST", "/api/sag/template", "SBSYS create case", json=body)
        self._ids[str(sag["Nummer"])] = int(sag["Id"])
        return _ref(sag)

    async def _case_id(self, case_number: str) -> int:
        if case_number not in self._ids and await self.find_case(case_number) is None:
            raise PermanentError(f"SBSYS has no case {case_number}")
        return self._ids[case_number]

    async def add_document(self, case_number: str, document: NewDocument, *,
                           idempotency_key: str) -> DocumentRef:
        sag_id = await self._case_id(case_number)
        tag = key_tag(idempotency_key)
        existing = await self._api("GET", f"/api/sag/{sag_id}/dokumenter", "SBSYS documents")
        for doc in existing or []:
            if doc.get("Beskrivelse") == tag:  # filed before; the answer was lost
                return DocumentRef(str(doc["Id"]), case_number)
        if not document.files:
            raise PermanentError("nothing to journalise: the document has no file")
        meta: dict[str, Any] = {
            "SagID": sag_id, "DokumentNavn": document.title[:250] or "Henvendelse",
            "Beskrivelse": tag, "DokumentArt": INCOMING, "OmfattetAfAktindsigt": True}
        if document.confidential:
            meta["ErBeskyttet"] = True  # a protected document: only those with access
        files: list[tuple[str, tuple[str | None, bytes | str, str]]] = [
            ("json", (None, json.dumps(meta, ensure_ascii=False), "application/json"))]
        # A file's name is listed with the document like its title: no CPR numbers there.
        files += [("file", (scrub_file_name(f.name), f.data, f.content_type))
                  for f in document.files]
        doc = await self._api("POST", "/api/dokument/journaliser", "SBSYS journalise",
                              files=files)
        return DocumentRef(str(doc["Id"]), case_number)

    async def journalise(self, document_id: str) -> None:
        """`dokument/journaliser` journalised the document when it was filed."""
