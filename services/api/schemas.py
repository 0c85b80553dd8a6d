"""Response models of the HTTP API (v1)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict

# SQLite hands back naive datetimes (stored as UTC): always answer with an explicit offset.
UtcDatetime = Annotated[datetime, AfterValidator(
    lambda v: v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC))]


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Transition(_Out):
    from_state: str | None
    to_state: str
    reason: str
    producer: str
    at: UtcDatetime


class ItemSummary(_Out):
    id: uuid.UUID
    state: str
    channel: str
    mailbox: str
    subject: str | None
    sender: str | None
    unit: str | None
    clerk: str | None
    case_number: str | None
    created_at: UtcDatetime
    updated_at: UtcDatetime


class ItemDetail(ItemSummary):
    correlation_id: uuid.UUID
    decision: dict[str, Any] | None
    failure_reason: str | None
    receipt: str | None = None
    history: list[Transition]


class ItemPage(BaseModel):
    items: list[ItemSummary]
    total: int
    limit: int
    offset: int


class AuditOut(_Out):
    seq: int
    at: UtcDatetime
    action: str
    actor: str
    item_id: uuid.UUID | None
    unit: str | None
    clerk: str | None
    case_number: str | None
    sender: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    entries: list[AuditOut]
    total: int
    limit: int
    offset: int


class VerifyOut(BaseModel):
    ok: bool
    checked: int
    first_bad_seq: int | None
    message: str


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}
