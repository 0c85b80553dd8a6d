"""The ESDH (case and document management) port the journal writes to, and the tenant's
configuration of which ESDH to use and how to reach it.

Implementations: the built-in local archive (services/journal/archive.py, tables in the same
database), SBSYS and GetOrganized (services/journal/sbsys.py, getorganized.py). Every creating
call takes an idempotency key, so a retried journalisation never makes a second case or
document. Adapters raise TransientError when the ESDH is down or slow (retry later) and
PermanentError when it refuses (unknown or closed case: a person must look).

Which ESDH: `municipality.esdh` in org.yaml (local, sbsys or getorganized); how to reach it:
the tenant's esdh.yaml, with secrets named by environment variable (`*_env`), never inline.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.errors import ConfigurationError
from shared.tenant import env_secret


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
    facet: str = "G01"  # handlingsfacet
    unit: str | None = None
    clerk: str | None = None
    party: str | None = None  # CPR or CVR number of the primary party, when known


@dataclass(frozen=True)
class DocumentFile:
    name: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class NewDocument:
    """An incoming document: `files[0]` is the original (the mail as .eml, the scan, the
    form), the rest its attachments."""

    title: str
    blob_sha256: str | None = None
    item_id: uuid.UUID | None = None
    files: tuple[DocumentFile, ...] = ()
    # A rule marked the item sensitive: SBSYS marks the document `ErBeskyttet`, GetOrganized
    # sets the site's confidentiality column (`confidential_field`); the local archive keeps
    # the mark on the item.
    confidential: bool = False


@dataclass(frozen=True)
class DocumentRef:
    document_id: str
    case_number: str


class Esdh(Protocol):
    async def find_case(self, case_number: str) -> CaseRef | None:
        """The case with this number, or None."""

    async def search_cases(self, party: str) -> list[CaseRef]:
        """Cases whose primary party has this CPR or CVR number."""

    async def create_case(self, case: NewCase, *, idempotency_key: str) -> CaseRef:
        """Create a case; the same key returns the case created the first time."""

    async def add_document(self, case_number: str, document: NewDocument, *,
                           idempotency_key: str) -> DocumentRef:
        """File an incoming document on a case; the same key returns the first document."""

    async def journalise(self, document_id: str) -> None:
        """Finalise (journalise) the document; doing it twice is harmless."""


def cpr_or_cvr(party: str) -> tuple[Literal["cpr", "cvr"], str]:
    """('cpr', 'ddmmyy-xxxx') or ('cvr', '12345678'); ValueError otherwise."""
    digits = party.replace("-", "").replace(" ", "")
    if digits.isdigit() and len(digits) == 10:
        return "cpr", f"{digits[:6]}-{digits[6:]}"
    if digits.isdigit() and len(digits) == 8:
        return "cvr", digits
    raise ValueError("not a CPR or CVR number")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _secret(env: str | None, what: str) -> str:
    return env_secret(env, f"esdh.yaml {what}") if env else ""


class SbsysConfig(_Model):
    base_url: str
    token_url: str
    client_id: str
    client_secret_env: str | None = None
    template_id: int = 1  # the case template ("sagsskabelon") new cases are made from
    timeout: float = 30.0

    def client_secret(self) -> str:
        return _secret(self.client_secret_env, "sbsys.client_secret_env")


class GetOrganizedConfig(_Model):
    base_url: str
    username: str
    password_env: str | None = None
    case_type_prefix: str = "EMN"
    # A case column holding the idempotency key, so a retried creation finds the first case.
    key_field: str = "ows_PostfordelerKey"
    document_list: str = "Dokumenter"
    # The document column (and its value) that marks a document confidential on this site;
    # None: the site has none, and a sensitive item's document is filed unmarked.
    confidential_field: str | None = "ows_Fortrolig"
    confidential_value: str = "1"
    timeout: float = 30.0

    def password(self) -> str:
        return _secret(self.password_env, "getorganized.password_env")


class EsdhConfig(_Model):
    kind: Literal["local", "sbsys", "getorganized"] = "local"
    sbsys: SbsysConfig | None = None
    getorganized: GetOrganizedConfig | None = None


def load_config(tenant_dir: Path, kind: str) -> EsdhConfig:
    path = tenant_dir / "esdh.yaml"
    data: dict[str, object] = {}
    if path.exists():
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"{path}: invalid YAML: {exc}") from exc
    try:
        config = EsdhConfig.model_validate({**data, "kind": kind})
    except ValidationError as exc:
        raise ConfigurationError(f"{path}: {exc}") from exc
    if kind != "local" and getattr(config, kind) is None:
        raise ConfigurationError(f"org.yaml says esdh: {kind}, but {path} has no {kind} section")
    return config
