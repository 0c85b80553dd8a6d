"""The ESDH (case and document management) port the journal writes to.

Implementations: the built-in local archive (services/journal/archive.py, tables in the same
database) and, later, adapters for SBSYS, Acadre, ... Every creating call takes an idempotency
key, so a retried journalisation never makes a second case or document.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class CaseRef:
    case_number: str
    title: str
    unit: str | None = None
    clerk: str | None = None
    status: str = "open"


@dataclass(frozen=True)
class NewCase:
    title: str
    kle: str | None = None
    facet: str = "G01"
    unit: str | None = None
    clerk: str | None = None
    party: str | None = None


@dataclass(frozen=True)
class NewDocument:
    title: str
    blob_sha256: str | None = None
    item_id: uuid.UUID | None = None


@dataclass(frozen=True)
class DocumentRef:
    document_id: str
    case_number: str


class Esdh(Protocol):
    async def find_case(self, case_number: str) -> CaseRef | None:
        """The case with this number, or None."""

    async def create_case(self, case: NewCase, *, idempotency_key: str) -> CaseRef:
        """Create a case; the same key returns the case created the first time."""

    async def add_document(self, case_number: str, document: NewDocument, *,
                           idempotency_key: str) -> DocumentRef:
        """File an incoming document on a case; the same key returns the first document."""

    async def journalise(self, document_id: str) -> None:
        """Finalise (journalise) the document; doing it twice is harmless."""
