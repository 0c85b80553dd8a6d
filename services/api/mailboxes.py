"""`GET /health/mailboxes`: the state of every mailbox as its ingest process last saw it.

Answers 200 when all are up and 503 when any is down (a monitoring system alerts on it), with
each mailbox's last error and next attempt either way. A mailbox that is down does not make
the API itself unready: /health/ready stays about the API's own dependencies.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import MailboxStatus

from .deps import session
from .schemas import UtcDatetime

router = APIRouter()


class MailboxOut(BaseModel):
    name: str
    kind: str
    up: bool
    failures: int
    last_error: str | None
    last_ok_at: UtcDatetime | None
    checked_at: UtcDatetime
    next_attempt_at: UtcDatetime | None


class MailboxesOut(BaseModel):
    status: str
    mailboxes: list[MailboxOut]


@router.get("/health/mailboxes", response_model=MailboxesOut)
async def mailboxes(s: Annotated[AsyncSession, Depends(session)]) -> JSONResponse:
    rows = (await s.execute(select(MailboxStatus).order_by(MailboxStatus.name))).scalars()
    out = [MailboxOut.model_validate(r, from_attributes=True) for r in rows]
    ok = all(m.up for m in out)
    body = MailboxesOut(status="ok" if ok else "degraded", mailboxes=out)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ok else 503)
