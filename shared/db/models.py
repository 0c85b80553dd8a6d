"""Tables. Ids are UUIDs so every process can create rows without coordination."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class Item(Base):
    """One thing that entered: a mail, a scan or a form submission."""

    __tablename__ = "items"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    correlation_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    channel: Mapped[str] = mapped_column(String(16))
    mailbox: Mapped[str] = mapped_column(String(255), index=True)
    source_ref: Mapped[str] = mapped_column(String(255))
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    raw_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    subject: Mapped[str | None] = mapped_column(Text)
    sender: Mapped[str | None] = mapped_column(String(320), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    unit: Mapped[str | None] = mapped_column(String(64), index=True)
    clerk: Mapped[str | None] = mapped_column(String(64))
    case_number: Mapped[str | None] = mapped_column(String(64), index=True)
    personal_data: Mapped[bool] = mapped_column(default=False)
    entities: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    reconcile_attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # The clerk's own work on the item (the API): who took it, and when they finished it.
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_at: Mapped[datetime | None] = mapped_column()
    handled_by: Mapped[str | None] = mapped_column(String(128))
    handled_at: Mapped[datetime | None] = mapped_column()

    transitions: Mapped[list[ItemTransition]] = relationship(
        back_populates="item", order_by="ItemTransition.id", lazy="raise"
    )


class ItemTransition(Base):
    __tablename__ = "item_transitions"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    item_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("items.id"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    causation_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    producer: Mapped[str] = mapped_column(String(64), default="")
    at: Mapped[datetime] = mapped_column(default=utcnow)

    item: Mapped[Item] = relationship(back_populates="transitions")


class SourceMessage(Base):
    """Each message seen at a source, so a re-fetch or a duplicate never makes a second item."""

    __tablename__ = "source_messages"
    __table_args__ = (
        UniqueConstraint("mailbox", "source_ref"),
        # One first copy per Message-ID and mailbox, even when copies are taken in concurrently.
        Index("uq_source_messages_first_copy", "mailbox", "message_id", unique=True,
              sqlite_where=text("duplicate = 0 AND message_id IS NOT NULL"),
              postgresql_where=text("duplicate = false AND message_id IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    mailbox: Mapped[str] = mapped_column(String(255))
    source_ref: Mapped[str] = mapped_column(String(255))
    message_id: Mapped[str | None] = mapped_column(String(998))
    item_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("items.id"))
    duplicate: Mapped[bool] = mapped_column(default=False)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class MailboxStatus(Base):
    """The last poll of each mailbox, written by the ingest process that polls it, so health
    checks in any process can tell which mailbox is down and since when."""

    __tablename__ = "mailbox_status"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    up: Mapped[bool] = mapped_column(default=False)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # consecutive
    last_error: Mapped[str | None] = mapped_column(Text)
    last_ok_at: Mapped[datetime | None] = mapped_column()
    checked_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime | None] = mapped_column()


class MailboxSync(Base):
    """Where the last incremental sync of a mailbox ended (EWS SyncState, Graph delta link),
    saved only when every message it covered has been moved out, so a restart resumes
    without losing one. `scope` names what the state belongs to (address and folder); a state
    of another scope, or none, means a full sync, which lists what is still in the folder."""

    __tablename__ = "mailbox_sync"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    scope: Mapped[str] = mapped_column(Text)
    state: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class InboxEntry(Base):
    """Messages a consumer has processed; written in the same transaction as the effect."""

    __tablename__ = "inbox"

    consumer: Mapped[str] = mapped_column(String(64), primary_key=True)
    message_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxMessage(Base):
    """Events written with the state change that caused them, published after commit."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_unpublished", "published_at", "created_at"),)

    message_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    item_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    topic: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column()


class EsdhCase(Base):
    """A case in the built-in local archive (the embedded default ESDH)."""

    __tablename__ = "esdh_cases"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    case_number: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(Text)
    kle: Mapped[str | None] = mapped_column(String(16))
    facet: Mapped[str] = mapped_column(String(8), default="G01")
    unit: Mapped[str | None] = mapped_column(String(64))
    clerk: Mapped[str | None] = mapped_column(String(64))
    party: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open")
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EsdhSerial(Base):
    """The last serial used for one case-number series (`{kle}-{facet}-` ... `-{yy}`), locked
    while a new case takes the next one, so numbering costs one row, not a scan."""

    __tablename__ = "esdh_serials"

    series: Mapped[str] = mapped_column(String(64), primary_key=True)
    last: Mapped[int] = mapped_column(Integer)


class EsdhDocument(Base):
    __tablename__ = "esdh_documents"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("esdh_cases.id"), index=True)
    item_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    title: Mapped[str] = mapped_column(Text)
    direction: Mapped[str] = mapped_column(String(16), default="incoming")
    blob_sha256: Mapped[str | None] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    journalised_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Receipt(Base):
    __tablename__ = "receipts"

    item_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    recipient: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(16))  # pending, sent
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime | None] = mapped_column()
    # Waiting receipts (status pending) are retried from next_attempt_at; `event` is the
    # ItemRouted JSON the retry composes from. Also the lease of the process sending it.
    next_attempt_at: Mapped[datetime | None] = mapped_column(index=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    event: Mapped[str | None] = mapped_column(Text)


class EsdhCall(Base):
    """The result of an ESDH call made under an idempotency key (remote ESDH adapters), so a
    retried journalisation continues where it stopped instead of creating again."""

    __tablename__ = "esdh_calls"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class Retention(Base):
    """Items whose message content was deleted by the retention job (audit entries stay)."""

    __tablename__ = "retention"

    item_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    purged_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The sha256 of every blob the item referred to; deleted (unless still referred to
    # elsewhere) by the retention job's collector, which then sets blobs_deleted_at.
    blobs: Mapped[list[str] | None] = mapped_column(JSON)
    blobs_deleted_at: Mapped[datetime | None] = mapped_column()


class AuditEntry(Base):
    """Append-only audit log; each entry's hash covers the previous entry's hash."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    item_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    action: Mapped[str] = mapped_column(String(32), index=True)
    actor: Mapped[str] = mapped_column(String(128))
    unit: Mapped[str | None] = mapped_column(String(64), index=True)
    clerk: Mapped[str | None] = mapped_column(String(64))
    case_number: Mapped[str | None] = mapped_column(String(64), index=True)
    sender: Mapped[str | None] = mapped_column(String(320))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(index=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditPending(Base):
    """An audit entry written with its effect, waiting to be chained into `audit_log`.

    Writers never wait for the chain: chaining runs in batches under the head lock.
    """

    __tablename__ = "audit_pending"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    item_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(128))
    unit: Mapped[str | None] = mapped_column(String(64))
    clerk: Mapped[str | None] = mapped_column(String(64))
    case_number: Mapped[str | None] = mapped_column(String(64))
    sender: Mapped[str | None] = mapped_column(String(320))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column()


class AuditHead(Base):
    """One row, locked while appending, so the chain has a single tip across processes."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    hash: Mapped[str] = mapped_column(String(64))


class ApiKey(Base):
    """An API key: only a hash of the secret is kept; the key is shown once at creation."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    prefix: Mapped[str] = mapped_column(String(32), unique=True)  # the public part, for lookup
    key_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(32))
    units: Mapped[list[str]] = mapped_column(JSON, default=list)
    forms: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()


class Correction(Base):
    """A person's re-route of an item: the model's training data (what was decided, what a
    person says it should have been, and why)."""

    __tablename__ = "item_corrections"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    item_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("items.id"), index=True)
    from_unit: Mapped[str | None] = mapped_column(String(64))
    to_unit: Mapped[str] = mapped_column(String(64))
    to_clerk: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(128))
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the decision overruled
    text_sha256: Mapped[str | None] = mapped_column(String(64))  # extracted text blob
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Delivery(Base):
    """One delivery of a routing decision to a unit (keyed by the ItemRouted event), so a
    redelivered event never forwards the item twice."""

    __tablename__ = "deliveries"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)  # the ItemRouted message id
    item_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    unit: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))  # smtp, imap, ews, graph
    recipient: Mapped[str] = mapped_column(String(320))
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(16))  # pending, sent, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column()


class AlertState(Base):
    """When each kind of operations alert was last sent, and what it last saw, so alerts are
    rate-limited across restarts and processes."""

    __tablename__ = "alert_state"

    kind: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_sent_at: Mapped[datetime | None] = mapped_column()
    last_value: Mapped[int] = mapped_column(Integer, default=0)
    checked_at: Mapped[datetime | None] = mapped_column()


class RuleVersion(Base):
    """One version of the routing rule set, kept forever: the newest is the active one. Every
    change (an import, a rule saved, enabled or disabled) writes the whole set as a new
    version with who made it and why, so history and diffs need nothing else."""

    __tablename__ = "rule_versions"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    sha256: Mapped[str] = mapped_column(String(64))
    author: Mapped[str] = mapped_column(String(128))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
