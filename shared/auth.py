"""Roles and API keys, shared by the API (which checks keys) and the CLI (which issues them).

A key looks like `pf_<prefix>_<secret>`. The prefix is stored in clear to find the row; only
the SHA-256 of the whole key is stored. The secret has 256 bits of entropy, so a plain hash
is as good as a slow password hash here, and it is checked in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import ApiKey, utcnow
from shared.errors import InvalidInput

KEY_PREFIX = "pf"


class Role(StrEnum):
    ADMINISTRATOR = "administrator"
    CLERK = "clerk"
    AUDITOR = "auditor"
    FORM_CLIENT = "form_client"


@dataclass(frozen=True)
class IssuedKey:
    id: uuid.UUID
    key: str  # shown once, never stored
    prefix: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def split_key(key: str) -> str | None:
    """The lookup prefix of a well-formed key, else None."""
    parts = key.split("_")
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != 12 or len(parts[2]) < 32:
        return None
    return parts[1]


def check_scope(role: Role, units: Sequence[str], forms: Sequence[str]) -> None:
    """A clerk needs units, a form client forms; nobody else carries a scope."""
    if role == Role.CLERK and not units:
        raise InvalidInput("a clerk key needs at least one unit (--unit)")
    if role == Role.FORM_CLIENT and not forms:
        raise InvalidInput("a form client key needs at least one form (--form)")
    if role != Role.CLERK and units:
        raise InvalidInput(f"role {role.value} is not scoped to units")
    if role != Role.FORM_CLIENT and forms:
        raise InvalidInput(f"role {role.value} is not scoped to forms")


async def create_key(session: AsyncSession, *, name: str, role: Role,
                     units: Iterable[str] = (), forms: Iterable[str] = ()) -> IssuedKey:
    """Add a key in the caller's transaction; the returned key is the only copy."""
    units, forms = sorted(set(units)), sorted(set(forms))
    check_scope(role, units, forms)
    prefix = secrets.token_hex(6)
    key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32).replace('_', '-')}"
    row = ApiKey(id=uuid.uuid4(), prefix=prefix, key_hash=hash_key(key), name=name,
                 role=role.value, units=units, forms=forms, created_at=utcnow())
    session.add(row)
    await session.flush()
    return IssuedKey(row.id, key, prefix)


async def find_key(session: AsyncSession, key: str) -> ApiKey | None:
    """The active key row for `key`, or None (unknown, malformed, revoked or wrong secret)."""
    prefix = split_key(key)
    if prefix is None:
        return None
    row = (await session.execute(select(ApiKey).where(ApiKey.prefix == prefix))
           ).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    return row if hmac.compare_digest(row.key_hash, hash_key(key)) else None


async def revoke_key(session: AsyncSession, key_id: uuid.UUID | str) -> bool:
    """Revoke by id or prefix; False when there is no such active key."""
    stmt = select(ApiKey)
    try:
        stmt = stmt.where(ApiKey.id == uuid.UUID(str(key_id)))
    except ValueError:
        stmt = stmt.where(ApiKey.prefix == str(key_id))
    row = (await session.execute(stmt)).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    return True
