"""The audit chain's hashing: canonical form and linking (no database)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

from shared.audit import GENESIS, canonical, chain_hash, plain, timestamp


def _fields(**over: object) -> dict[str, object]:
    base: dict[str, object] = dict(
        seq=1, action="routed", actor="router", item_id=uuid.UUID(int=7), unit="parkering",
        clerk="ALA", case_number=None, sender="a@example.dk",
        details={"reasons": ["rule p-1"], "kle": "05.09.04"},
        at=datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=UTC))
    base.update(over)
    return base


def test_timestamps_are_utc_with_microseconds_whatever_the_zone() -> None:
    aware = datetime(2026, 11, 23, 11, 0, 0, 5, tzinfo=timezone(timedelta(hours=1)))
    naive_utc = datetime(2026, 11, 23, 10, 0, 0, 5)  # as SQLite hands it back
    assert timestamp(aware) == timestamp(naive_utc) == "2026-11-23T10:00:00.000005Z"


def test_canonical_json_is_stable_and_sorted() -> None:
    a = canonical(**_fields())  # type: ignore[arg-type]
    b = canonical(**_fields(details={"kle": "05.09.04", "reasons": ["rule p-1"]}))  # type: ignore[arg-type]
    assert a == b
    assert " " not in a.replace("rule p-1", "")
    assert list(json.loads(a)) == sorted(json.loads(a))
    # The same entry read back from a database (ids as strings, naive UTC time) hashes the same.
    c = canonical(**_fields(item_id=str(uuid.UUID(int=7)),  # type: ignore[arg-type]
                            at=datetime(2026, 11, 23, 10, 0, 0, 123456)))
    assert a == c


def test_every_field_changes_the_hash() -> None:
    base = chain_hash(GENESIS, canonical(**_fields()))  # type: ignore[arg-type]
    for change in (dict(seq=2), dict(action="triage"), dict(unit="affald"), dict(clerk=None),
                   dict(case_number="x"), dict(sender="b@example.dk"),
                   dict(details={"reasons": []}),
                   dict(at=datetime(2026, 11, 23, 10, 0, 0, 123457, tzinfo=UTC))):
        assert chain_hash(GENESIS, canonical(**_fields(**change))) != base, change  # type: ignore[arg-type]
    assert chain_hash("1" * 64, canonical(**_fields())) != base  # type: ignore[arg-type]


def test_details_are_normalised_as_a_json_column_returns_them() -> None:
    item = uuid.uuid4()
    assert plain({"reasons": ("a", "b"), "item": item}) == {"reasons": ["a", "b"],
                                                              "item": str(item)}
