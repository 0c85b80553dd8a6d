"""Response models of the HTTP API (v1)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from shared.auth import Role

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
    claimed_by: str | None = None
    claimed_at: UtcDatetime | None = None
    handled_by: str | None = None
    handled_at: UtcDatetime | None = None


class AttachmentOut(BaseModel):
    index: int = Field(description="Position; download at .../attachments/{index}.")
    filename: str
    content_type: str
    size: int
    has_text: bool


class DeliveryOut(_Out):
    id: uuid.UUID
    unit: str
    channel: str
    recipient: str
    message_id: str
    status: str
    attempts: int
    last_error: str | None
    created_at: UtcDatetime
    sent_at: UtcDatetime | None


class CorrectionOut(_Out):
    from_unit: str | None
    to_unit: str
    to_clerk: str | None
    reason: str
    actor: str
    at: UtcDatetime


class ItemDetail(ItemSummary):
    correlation_id: uuid.UUID
    decision: dict[str, Any] | None
    failure_reason: str | None
    receipt: str | None = None
    history: list[Transition]
    text: str | None = Field(None, description="The extracted text of the message body.")
    attachments: list[AttachmentOut] = []
    deliveries: list[DeliveryOut] = []
    corrections: list[CorrectionOut] = []


class Reroute(BaseModel):
    unit: str = Field(min_length=1, max_length=64)
    clerk: str | None = Field(None, min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=2000,
                        description="Why; kept with the item and as training data.")


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


class Problem(BaseModel):
    """An error. The detail never contains item data."""

    detail: str


# Every /api operation can refuse the caller (documented on each router).
REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No valid credentials."},
    403: {"model": Problem, "description": "Not allowed for this role or scope."}}


class _KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, description="Clerk initials or system.")


class ClerkKeyCreate(_KeyCreate):
    role: Literal[Role.CLERK]
    units: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, description="The units the clerk works in.")


class FormClientKeyCreate(_KeyCreate):
    role: Literal[Role.FORM_CLIENT]
    forms: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, description="The forms the client may submit.")


class StaffKeyCreate(_KeyCreate):
    role: Literal[Role.ADMINISTRATOR, Role.AUDITOR]


ApiKeyCreate = Annotated[ClerkKeyCreate | FormClientKeyCreate | StaffKeyCreate,
                         Field(discriminator="role")]


class ApiKeyOut(_Out):
    id: uuid.UUID
    prefix: str
    name: str
    role: str
    units: list[str]
    forms: list[str]
    created_at: UtcDatetime
    revoked_at: UtcDatetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The key. Shown this once; only a hash is kept.")


class DeadLetterOut(BaseModel):
    consumer: str
    message_id: str
    topic: str | None
    item_id: uuid.UUID | None
    event_type: str | None
    reason: str
    attempts: int | None = None


class DeadLetterDetail(DeadLetterOut):
    body: dict[str, Any] | str = Field(description="The event (JSON), or the raw text when it "
                                                   "cannot be decoded.")


class DeadLetterList(BaseModel):
    dead_letters: list[DeadLetterOut]
    depth: dict[str, int] = Field(description="Messages waiting per consumer's queue.")


class ReplayResult(BaseModel):
    replayed: int


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}
