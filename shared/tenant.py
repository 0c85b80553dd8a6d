"""The tenant's configuration directory: organisation, forms, mailboxes (and rules.yaml, which
the router reads). The organisation file follows the format of `org.yaml` in the sample data."""

from __future__ import annotations

import csv
import os
from functools import cached_property
from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from shared.errors import ConfigurationError


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Clerk(_Model):
    initials: str
    name: str = ""


class Unit(_Model):
    id: str
    name: str
    mailbox: str | None = None
    kle: tuple[str, ...] = ()
    clerks: tuple[Clerk, ...] = ()
    sensitive: bool = False
    synonyms: tuple[str, ...] = ()


class Municipality(_Model):
    name: str
    domain: str
    main_mailbox: str
    shared_mailboxes: tuple[str, ...] = ()
    esdh: str = "local"


class Form(_Model):
    form_id: str
    title: str
    route: str
    kle: str | None = None
    journal: str = "new_case"
    sensitive: bool = False
    fallback_unit: str | None = None


class MailboxConfig(_Model):
    name: str
    kind: Literal["imap", "maildir"] = "imap"
    address: str = ""
    host: str = "127.0.0.1"
    port: int = 993
    ssl: bool = True
    username: str = ""
    password: SecretStr | None = None
    password_env: str | None = Field(None, description="Environment variable with the password.")
    folder: str = "INBOX"
    processed_folder: str = "Postfordeler/Behandlet"
    failed_folder: str = "Postfordeler/Fejl"
    path: Path | None = Field(None, description="Maildir path (relative to the data directory).")

    def secret(self) -> str:
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigurationError(f"mailbox {self.name}: ${self.password_env} is not set")
            return value
        return self.password.get_secret_value() if self.password else ""


class Case(_Model):
    """A row of the tenant's case register (cases.csv)."""

    case_number: str
    title: str = ""
    kle: str | None = None
    facet: str = "G01"
    unit: str | None = None
    clerk: str | None = None
    status: str = "open"
    party: str | None = None


M = TypeVar("M", bound=_Model)


class Tenant:
    """Read-only view of one tenant directory; files are read lazily and once."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise ConfigurationError(f"tenant directory {self.directory} does not exist")

    def _load(self, name: str) -> dict[str, object]:
        path = self.directory / name
        if not path.exists():
            return {}
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"{path}: invalid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigurationError(f"{path}: expected a mapping at the top level")
        return data

    def _parse(self, name: str, model: type[M], data: object) -> M:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise ConfigurationError(f"{self.directory / name}: {exc}") from exc

    @cached_property
    def municipality(self) -> Municipality:
        data = self._load("org.yaml").get("municipality")
        return self._parse("org.yaml", Municipality, data)

    @cached_property
    def units(self) -> dict[str, Unit]:
        org = self._load("org.yaml")
        raw = list(org.get("units") or [])  # type: ignore[call-overload]
        units = [self._parse("org.yaml", Unit, u) for u in raw]
        return {u.id: u for u in units}

    @cached_property
    def fallback_unit(self) -> str:
        fallback = self._load("org.yaml").get("fallback") or {}
        return str(fallback.get("id", "hovedpost")) if isinstance(fallback, dict) else "hovedpost"

    @cached_property
    def forms(self) -> dict[str, Form]:
        raw = list(self._load("forms.yaml").get("forms") or [])  # type: ignore[call-overload]
        forms = [self._parse("forms.yaml", Form, f) for f in raw]
        return {f.form_id: f for f in forms}

    @cached_property
    def mailboxes(self) -> tuple[MailboxConfig, ...]:
        raw = list(self._load("mailboxes.yaml").get("mailboxes") or [])  # type: ignore[call-overload]
        return tuple(self._parse("mailboxes.yaml", MailboxConfig, m) for m in raw)

    def rules_path(self) -> Path:
        return self.directory / "rules.yaml"

    def cases_path(self) -> Path:
        return self.directory / "cases.csv"

    @cached_property
    def cases(self) -> dict[str, Case]:
        path = self.cases_path()
        if not path.exists():
            return {}
        with path.open(encoding="utf-8", newline="") as fh:
            rows = [self._parse("cases.csv", Case, row) for row in csv.DictReader(fh)]
        return {c.case_number: c for c in rows}

    def unit(self, unit_id: str) -> Unit:
        try:
            return self.units[unit_id]
        except KeyError:
            raise ConfigurationError(f"unknown unit {unit_id!r}") from None
