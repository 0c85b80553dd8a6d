"""Message contracts: frozen pydantic models, each with the envelope every message carries.

Events are named in the past tense. Blobs travel by reference (`BlobRef`), never as bytes.
Bump `SCHEMA_VERSION` when a change is not backwards compatible; the JSON schemas are
snapshotted in tests/unit/snapshots so any change shows up in review.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

SCHEMA_VERSION = 1
E = TypeVar("E", bound="ItemEvent")


def _now() -> datetime:
    return datetime.now(UTC)


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Channel(StrEnum):
    EMAIL = "email"
    SCAN = "scan"
    FORM = "form"


class ItemState(StrEnum):
    RECEIVED = "received"
    EXTRACTED = "extracted"
    CLASSIFIED = "classified"
    ROUTED = "routed"
    JOURNALISED = "journalised"
    DONE = "done"
    TRIAGE = "triage"
    NOT_RELEVANT = "not_relevant"
    FAILED = "failed"


TERMINAL_STATES = frozenset(
    {ItemState.DONE, ItemState.TRIAGE, ItemState.NOT_RELEVANT, ItemState.FAILED}
)


class BlobRef(Frozen):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    content_type: str = "application/octet-stream"


class Address(Frozen):
    name: str = ""
    address: str = ""


class PageText(Frozen):
    """How one page of a document was read: its text layer, or OCR with its confidence."""

    page: int = Field(ge=1)
    source: Literal["text_layer", "ocr"]
    chars: int = 0
    confidence: float | None = None  # OCR: mean word confidence, 0-100
    orientation: int = 0  # OCR: degrees the page was turned as found (0, 90, 180, 270)
    problem: str | None = None  # why the page gave no text, if it failed


class AttachmentRef(Frozen):
    filename: str
    content_type: str
    blob: BlobRef
    text: BlobRef | None = None
    # Structure: the index (in the item's attachments) of the forwarded mail, archive or
    # winmail.dat this part came out of; None for a part of the item itself.
    parent: int | None = None
    pages: tuple[PageText, ...] = ()
    problem: str | None = None  # why its text could not be read (refused or failed)


class Entity(Frozen):
    """Something found in an item: a licence plate, case number, keyword, ..."""

    kind: str
    value: str
    start: int = -1
    end: int = -1
    source: str = "body"
    # For personal identifiers shown masked (CPR): a keyed fingerprint, see shared/personal.py.
    digest: str | None = None


class RouteOutcome(StrEnum):
    ROUTED = "routed"
    TRIAGE = "triage"
    NOT_RELEVANT = "not_relevant"


class JournalAction(StrEnum):
    NONE = "none"
    MATCHED_CASE = "matched_case"
    NEW_CASE = "new_case"


class Envelope(Frozen):
    message_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None = None
    occurred_at: datetime = Field(default_factory=_now)
    producer: str
    schema_version: int = SCHEMA_VERSION


class ItemEvent(Envelope):
    item_id: uuid.UUID

    @property
    def topic(self) -> str:
        return TOPICS[type(self).__name__]

    def follow(self, cls: type[E], producer: str, **fields: object) -> E:
        """The next event in the item's flow: same correlation, caused by this one."""
        return cls(
            correlation_id=self.correlation_id,
            causation_id=self.message_id,
            producer=producer,
            item_id=self.item_id,
            **fields,
        )


class ItemReceived(ItemEvent):
    type: Literal["ItemReceived"] = "ItemReceived"
    channel: Channel
    mailbox: str
    source_ref: str
    raw: BlobRef


class ItemExtracted(ItemEvent):
    type: Literal["ItemExtracted"] = "ItemExtracted"
    channel: Channel
    mailbox: str
    subject: str = ""
    sender: Address = Address()
    recipients: tuple[str, ...] = ()
    auto_submitted: bool = False
    text: BlobRef
    attachments: tuple[AttachmentRef, ...] = ()
    pages: tuple[PageText, ...] = ()  # a scanned item's pages (text layer or OCR)


class ItemClassified(ItemEvent):
    type: Literal["ItemClassified"] = "ItemClassified"
    entities: tuple[Entity, ...] = ()
    personal_data: bool = False
    # The routing model's answer (absent when no model is configured): the predicted unit or
    # not-relevant class, its calibrated probability, whether it is below the abstain threshold,
    # the features and entities behind it, and the KLE topic suggested for journalising.
    prediction: str | None = None
    probability: float | None = None
    abstain: bool = False
    explanation: tuple[str, ...] = ()
    kle_suggestion: str | None = None
    model: str | None = None


class ItemRouted(ItemEvent):
    type: Literal["ItemRouted"] = "ItemRouted"
    outcome: RouteOutcome
    unit: str | None = None
    clerk: str | None = None
    case_number: str | None = None
    journal: JournalAction = JournalAction.NONE
    kle: str | None = None
    receipt: bool = False
    reasons: tuple[str, ...] = ()
    # From the routing rules: which rules fired (and the rule set version), a named receipt
    # template, the title of a new case, and whether the item is to be treated as sensitive.
    rules: tuple[str, ...] = ()
    rule_version: int | None = None
    receipt_template: str | None = None
    case_title: str | None = None
    sensitive: bool = False


class ItemJournalised(ItemEvent):
    type: Literal["ItemJournalised"] = "ItemJournalised"
    case_number: str | None = None
    document_id: str | None = None
    receipt_message_id: str | None = None


class ItemFailed(ItemEvent):
    type: Literal["ItemFailed"] = "ItemFailed"
    stage: str
    reason: str


TOPICS: dict[str, str] = {
    "ItemReceived": "item.received",
    "ItemExtracted": "item.extracted",
    "ItemClassified": "item.classified",
    "ItemRouted": "item.routed",
    "ItemJournalised": "item.journalised",
    "ItemFailed": "item.failed",
}

AnyEvent = Annotated[
    ItemReceived | ItemExtracted | ItemClassified | ItemRouted | ItemJournalised | ItemFailed,
    Field(discriminator="type"),
]
EVENT_TYPES: tuple[type[ItemEvent], ...] = (
    ItemReceived,
    ItemExtracted,
    ItemClassified,
    ItemRouted,
    ItemJournalised,
    ItemFailed,
)
_adapter: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)


def parse_event(data: bytes | str) -> ItemEvent:
    """Decode an event from its JSON form; raises pydantic.ValidationError when invalid."""
    return _adapter.validate_json(data)


def encode_event(event: ItemEvent) -> bytes:
    return event.model_dump_json().encode()

