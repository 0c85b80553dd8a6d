"""Rule sets in the database: every change is a new version (the whole set, who, when, why);
the newest version is the active one. `diff` says what changed between two versions."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import RuleVersion

from .model import RuleSet


class StaleVersion(Exception):
    """The rule set changed since the version the change was based on."""


@dataclass(frozen=True)
class Change:
    rule: str | None  # None: a setting of the whole set (fallback_receipt, model)
    kind: str  # added, removed, changed
    field: str | None = None
    old: Any = None
    new: Any = None

    def words(self) -> str:
        what = f"rule '{self.rule}'" if self.rule is not None else "rule set"
        if self.kind != "changed":
            return f"{what} {self.kind}"
        return f"{what}: {self.field} {json.dumps(self.old, ensure_ascii=False)} -> " \
               f"{json.dumps(self.new, ensure_ascii=False)}"


def digest(document: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True, ensure_ascii=False)
                          .encode()).hexdigest()


async def latest_version(session: AsyncSession) -> int | None:
    """The active version's number (one indexed lookup; the router asks this to notice
    changes without a restart)."""
    version: int | None = (await session.execute(
        select(func.max(RuleVersion.version)))).scalar_one_or_none()
    return version


async def get(session: AsyncSession, version: int | None = None) -> RuleVersion | None:
    """A version (the active one by default)."""
    stmt = select(RuleVersion)
    stmt = (stmt.where(RuleVersion.version == version) if version is not None
            else stmt.order_by(RuleVersion.version.desc()).limit(1))
    row: RuleVersion | None = (await session.execute(stmt)).scalar_one_or_none()
    return row


async def active(session: AsyncSession) -> tuple[int, RuleSet] | None:
    row = await get(session)
    if row is None:
        return None
    return row.version, RuleSet.parse(row.document, f"rule set version {row.version}")


async def save(session: AsyncSession, ruleset: RuleSet, *, author: str, comment: str = "",
               base_version: int | None = None, check_base: bool = False) -> RuleVersion:
    """Write `ruleset` as the next version in the caller's transaction (the caller commits).
    With `check_base`, refuse when the active version is no longer `base_version`; two
    writers racing for the same number are told apart by the primary key at commit."""
    current = await latest_version(session)
    if check_base and current != base_version:
        raise StaleVersion(f"the rule set is at version {current}, not {base_version}")
    document = ruleset.document()
    row = RuleVersion(version=(current or 0) + 1, document=document, sha256=digest(document),
                      author=author, comment=comment)
    session.add(row)
    await session.flush()
    return row


async def history(session: AsyncSession, *, limit: int = 50, rule: str | None = None,
                  ) -> list[tuple[RuleVersion, list[Change]]]:
    """The newest `limit` versions, each with what changed from the version before it
    (only versions that touched `rule`, when given)."""
    rows = list((await session.execute(select(RuleVersion).order_by(
        RuleVersion.version.desc()).limit(limit + 1 if rule is None else 10_000))).scalars())
    out = []
    # [:len(rows)]: no versions yet is an empty history, not a length mismatch.
    for row, before in zip(rows, [*rows[1:], None][:len(rows)], strict=True):
        changes = diff(before.document if before is not None else {}, row.document)
        if rule is not None:
            changes = [c for c in changes if c.rule == rule]
            if not changes:
                continue
        out.append((row, changes))
    return out[:limit]


def _rules(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    # Defaults filled in, so enabling a rule reads "enabled false -> true", not "null -> true".
    return {str(r.get("name")): {"priority": 100, "enabled": True, "stop": True, **r}
            for r in document.get("rules", ())}


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def diff(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """What changed from `old` to `new`, field by field, in words an administrator reads."""
    changes: list[Change] = []
    for key in sorted((set(old) | set(new)) - {"rules"}):
        a, b = _flat(old.get(key), key), _flat(new.get(key), key)
        changes += [Change(None, "changed", f, a.get(f), b.get(f))
                    for f in sorted(set(a) | set(b)) if a.get(f) != b.get(f)]
    before, after = _rules(old), _rules(new)
    for name in after:
        if name not in before:
            changes.append(Change(name, "added"))
            continue
        a, b = _flat(before[name]), _flat(after[name])
        changes += [Change(name, "changed", f, a.get(f), b.get(f))
                    for f in sorted(set(a) | set(b)) if a.get(f) != b.get(f)]
    changes += [Change(name, "removed") for name in before if name not in after]
    return changes
