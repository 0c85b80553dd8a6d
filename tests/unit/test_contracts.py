"""The message contracts: frozen, round-trip through JSON, and their schemas are snapshotted so
that any change to a contract shows up in review (regenerate with UPDATE_SNAPSHOTS=1)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.contracts import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    BlobRef,
    ItemClassified,
    ItemReceived,
    ItemRouted,
    RouteOutcome,
    parse_event,
)

SNAPSHOTS = Path(__file__).parent / "snapshots"


def _received() -> ItemReceived:
    return ItemReceived(correlation_id=uuid.uuid4(), producer="test", item_id=uuid.uuid4(),
                        channel="email", mailbox="post", source_ref="1:1",
                        raw=BlobRef(sha256="0" * 64, size=10))


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda c: c.__name__)
def test_schema_snapshot(cls: type) -> None:
    schema = json.dumps(cls.model_json_schema(), indent=2, sort_keys=True, ensure_ascii=False)
    path = SNAPSHOTS / f"{cls.__name__}.json"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.write_text(schema + "\n", encoding="utf-8")
    assert path.exists(), f"no snapshot for {cls.__name__}: run with UPDATE_SNAPSHOTS=1"
    assert schema + "\n" == path.read_text(encoding="utf-8"), (
        f"the {cls.__name__} contract changed: review it, bump SCHEMA_VERSION if it is not "
        "backwards compatible, and regenerate the snapshot with UPDATE_SNAPSHOTS=1")


def test_events_are_frozen_and_carry_the_envelope() -> None:
    event = _received()
    with pytest.raises(ValidationError):
        event.mailbox = "other"  # type: ignore[misc]
    assert event.schema_version == SCHEMA_VERSION
    assert event.topic == "item.received"
    assert parse_event(event.model_dump_json()) == event


def test_follow_keeps_correlation_and_sets_causation() -> None:
    first = _received()
    nxt = first.follow(ItemClassified, "classifier")
    assert nxt.correlation_id == first.correlation_id
    assert nxt.causation_id == first.message_id
    assert nxt.item_id == first.item_id
    assert nxt.message_id != first.message_id


def test_unknown_fields_and_bad_refs_are_refused() -> None:
    data = json.loads(_received().model_dump_json())
    data["surprise"] = 1
    with pytest.raises(ValidationError):
        parse_event(json.dumps(data))
    with pytest.raises(ValidationError):
        BlobRef(sha256="not-a-hash", size=1)


def test_routed_event_round_trips_enums() -> None:
    ev = _received().follow(ItemRouted, "router", outcome=RouteOutcome.TRIAGE, reasons=("x",))
    again = parse_event(ev.model_dump_json())
    assert isinstance(again, ItemRouted) and again.outcome is RouteOutcome.TRIAGE
