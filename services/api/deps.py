"""Request dependencies: the database session, who is asking, and what they may do.

Every /api route depends on `current_principal` (an API key or an OIDC bearer token; 401
without one). Routers check roles with `require(...)`, e.g.

    @router.get("/x", dependencies=[Depends(require(Role.ADMINISTRATOR))])
    async def x(p: Annotated[Principal, Depends(require(Role.CLERK, Role.AUDITOR))]) -> ...

and scopes with `Principal.may_see_unit` / `Principal.may_submit_form`. Error bodies never
say more than "authentication required" or "forbidden".
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.auth import Role, find_key

__all__ = ["ANONYMOUS", "Principal", "Role", "Session", "current_principal", "require",
           "session"]


@dataclass(frozen=True)
class Principal:
    """Who is asking: a name (clerk initials, key name or token subject), roles, and the
    units (clerks) or forms (form clients) the roles are scoped to."""

    name: str
    roles: frozenset[str] = frozenset()
    units: frozenset[str] = frozenset()
    forms: frozenset[str] = frozenset()
    via: str = "none"  # api-key or oidc

    def has(self, *roles: str) -> bool:
        return bool(self.roles & set(roles))

    def may_see_unit(self, unit: str | None, *, sensitive: bool) -> bool:
        """Auditors see everything; clerks their own units; administrators every unit that is
        not sensitive. Sensitive units' items, and items a rule marked sensitive (the caller
        passes `sensitive` for either), are for their unit's clerks and auditors only."""
        if self.has(Role.AUDITOR):
            return True
        if self.has(Role.CLERK) and unit is not None and unit in self.units:
            return True
        return self.has(Role.ADMINISTRATOR) and not sensitive

    def may_submit_form(self, form_id: str) -> bool:
        return self.has(Role.FORM_CLIENT) and form_id in self.forms


ANONYMOUS = Principal("anonymous")

UNAUTHENTICATED = HTTPException(401, "authentication required",
                                headers={"WWW-Authenticate": 'Bearer realm="postfordeler"'})
FORBIDDEN = HTTPException(403, "forbidden")

_bearer = HTTPBearer(auto_error=False, description="An API key (pf_...) or an OIDC access "
                                                   "token from the configured issuer.")


async def session(request: Request) -> AsyncIterator[AsyncSession]:
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    async with sessions() as s:
        yield s


async def current_principal(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, from `Authorization: Bearer <API key or JWT>`; 401 otherwise."""
    if credentials is None or not credentials.credentials:
        raise UNAUTHENTICATED
    token = credentials.credentials
    if token.startswith("pf_"):
        sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
        async with sessions() as s:
            row = await find_key(s, token)
        if row is None:
            raise UNAUTHENTICATED
        return Principal(row.name, frozenset({row.role}), frozenset(row.units or ()),
                         frozenset(row.forms or ()), via="api-key")
    verifier = getattr(request.app.state, "oidc", None)
    if verifier is None or token.count(".") != 2:
        raise UNAUTHENTICATED
    principal: Principal | None = await verifier.principal(token)
    if principal is None:
        raise UNAUTHENTICATED
    return principal


def require(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits callers holding any of `roles` (403 for the rest)."""
    wanted = frozenset(roles)

    async def dependency(
            principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if not principal.roles & wanted:
            raise FORBIDDEN
        return principal

    dependency.__name__ = "require_" + "_or_".join(sorted(wanted))
    return dependency


Session = Annotated[AsyncSession, Depends(session)]
Authenticated = Annotated[Principal, Depends(current_principal)]
Administrator = Annotated[Principal, Depends(require(Role.ADMINISTRATOR))]
Reader = Annotated[Principal, Depends(require(Role.ADMINISTRATOR, Role.CLERK, Role.AUDITOR))]
Clerk = Annotated[Principal, Depends(require(Role.CLERK))]
Auditor = Annotated[Principal, Depends(require(Role.AUDITOR))]
