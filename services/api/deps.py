"""Request dependencies: the database session and the access-control hook."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


@dataclass(frozen=True)
class Principal:
    """Who is asking. Access control (a later issue) replaces `current_principal`."""

    name: str
    roles: frozenset[str] = frozenset()


ANONYMOUS = Principal("anonymous", frozenset({"reader"}))


async def current_principal(request: Request) -> Principal:
    # The hook for access control: override with app.dependency_overrides[current_principal]
    # or replace this function; every /api route depends on it.
    return ANONYMOUS


async def session(request: Request) -> AsyncIterator[AsyncSession]:
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    async with sessions() as s:
        yield s
