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


def env_secret(name: str, what: str, *, allow_empty: bool = True) -> str:
    """The secret in the environment variable `name` (configuration files name the variable,
    never the secret); a ConfigurationError naming `what` when it is unset (or empty)."""
    value = os.environ.get(name)
    if value is None or (not value and not allow_empty):
        raise ConfigurationError(f"{what}: ${name} is not set")
    return value

class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Clerk(_Model):
    initials: str
    name: str = ""


class FolderTarget(_Model):
    """A folder of a mailbox in mailboxes.yaml that a unit's items are put into."""

    mailbox: str = Field(min_length=1, description="A name from mailboxes.yaml.")
    path: str = Field(min_length=1, description='"A/B" under the top of the mailbox, or INBOX.')


class UnitDelivery(_Model):
    """How a unit gets its items (org.yaml `delivery`); every item is in the clerk API too."""

    forward: bool = Field(True, description="Forward by SMTP to the unit's `mailbox`.")
    folder: FolderTarget | None = None


class Unit(_Model):
    id: str
    name: str
    mailbox: str | None = None
    delivery: UnitDelivery = UnitDelivery()
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


class FormField(_Model):
    """One field of a digital form's schema (forms.yaml `fields`)."""

    name: str
    type: Literal["string", "text", "integer", "number", "boolean", "date", "email"] = "string"
    required: bool = False
    max_length: int = Field(1000, ge=1)
    pattern: str | None = None
    choices: tuple[str, ...] = ()


class FormClient(_Model):
    """A system allowed to submit a form: HMAC over the body with a shared secret, or a
    bearer token. The secret itself is never in the file, only the variable that holds it."""

    id: str
    auth: Literal["hmac", "bearer"] = "hmac"
    secret_env: str

    def secret(self) -> str:
        return env_secret(self.secret_env, f"form client {self.id}", allow_empty=False)


class Form(_Model):
    form_id: str
    title: str
    route: str
    kle: str | None = None
    journal: str = "new_case"
    sensitive: bool = False
    fallback_unit: str | None = None
    fields: tuple[FormField, ...] = ()
    # Fields not in `fields` are refused unless this is true.
    allow_extra_fields: bool = False
    clients: tuple[FormClient, ...] = ()
    max_attachments: int = Field(10, ge=0)
    max_attachment_bytes: int = Field(20 * 1024 * 1024, ge=0)
    attachment_types: tuple[str, ...] = (
        "application/pdf", "image/jpeg", "image/png", "image/tiff", "text/plain",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document")


class OAuth2Config(_Model):
    """App-only OAuth2 (client credentials), e.g. an Entra ID app registration, or a token
    handed over in an environment variable by something that refreshes it."""

    token_url: str | None = None  # default: Entra ID's v2.0 endpoint of `tenant_id`
    tenant_id: str | None = None
    client_id: str = ""
    client_secret_env: str | None = None
    scope: str = "https://outlook.office365.com/.default"
    access_token_env: str | None = None

    def endpoint(self) -> str:
        if self.token_url:
            return self.token_url
        if not self.tenant_id:
            raise ConfigurationError("oauth2 needs token_url or tenant_id")
        return f"https://login.microsoftonline.com/{self.tenant_id}/oauth2/v2.0/token"

    def client_secret(self) -> str:
        return env_secret(self.client_secret_env or "", "oauth2", allow_empty=False)


class MailboxConfig(_Model):
    name: str
    kind: Literal["imap", "maildir", "ews", "graph"] = "imap"
    address: str = Field("", description="The mailbox's SMTP address (EWS, Graph user).")
    host: str = "127.0.0.1"
    port: int = 993
    ssl: bool = True
    username: str = ""
    password: SecretStr | None = None
    password_env: str | None = Field(None, description="Environment variable with the password.")
    auth: Literal["password", "oauth2"] = "password"
    oauth2: OAuth2Config | None = None
    idle: bool = Field(True, description="IMAP: wait with IDLE when the server offers it.")
    idle_timeout: float = Field(300.0, gt=0, description="IMAP IDLE: poll anyway after this.")
    folder: str = "INBOX"
    processed_folder: str = "Postfordeler/Behandlet"
    failed_folder: str = "Postfordeler/Fejl"
    path: Path | None = Field(None, description="Maildir path (relative to the data directory).")
    # EWS (Exchange on premises)
    ews_url: str | None = Field(
        None, description="EWS endpoint (required: autodiscover is not supported).")
    ews_auth: Literal["NTLM", "basic", "digest", "OAuth 2.0", "no authentication"] = "NTLM"
    access_type: Literal["delegate", "impersonation"] = "delegate"
    ews_version: str | None = Field(None, description="Server build, e.g. 15.1.2507.6; none: "
                                                      "ask the server.")
    # Microsoft Graph (Exchange Online)
    graph_url: str = "https://graph.microsoft.com/v1.0"

    def secret(self) -> str:
        if self.password_env:
            return env_secret(self.password_env, f"mailbox {self.name}")
        return self.password.get_secret_value() if self.password else ""

    def oauth(self) -> OAuth2Config:
        if self.oauth2 is None:
            raise ConfigurationError(f"mailbox {self.name}: auth oauth2 needs an oauth2 section")
        return self.oauth2


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

    @cached_property
    def delivery_mailboxes(self) -> tuple[MailboxConfig, ...]:
        """Mailboxes that only receive (mailboxes.yaml `delivery_mailboxes`): units' folders
        live there, and ingest does not read them."""
        data = self._load("mailboxes.yaml").get("delivery_mailboxes") or []
        return tuple(self._parse("mailboxes.yaml", MailboxConfig, m)
                     for m in list(data))  # type: ignore[call-overload]

    def delivery_mailbox(self, name: str) -> MailboxConfig:
        """The mailbox a unit's `delivery.folder` names: a delivery mailbox, or one that
        ingest reads too (its inbox is read, other folders are not)."""
        for config in (*self.delivery_mailboxes, *self.mailboxes):
            if config.name == name:
                if config.kind == "maildir":
                    raise ConfigurationError(f"mailbox {name}: folder delivery needs imap, "
                                             "ews or graph")
                return config
        raise ConfigurationError(f"unknown mailbox {name!r} (mailboxes.yaml)")

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
