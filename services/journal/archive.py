"""The built-in local archive: the default ESDH, over the esdh_cases/esdh_documents tables.

It works inside the caller's session, so a case and document are created in the same
transaction as the item's state change: either both happen or neither does.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import EsdhCase, EsdhDocument, EsdhSerial, utcnow
from shared.errors import InvalidInput, TransientError
from shared.esdh import CaseRef, DocumentRef, NewCase, NewDocument

DEFAULT_KLE = "00.00.00"
_SERIAL_ATTEMPTS = 5


def _ref(case: EsdhCase) -> CaseRef:
    return CaseRef(case_number=case.case_number, title=case.title, unit=case.unit,
                   clerk=case.clerk, status=case.status)


def case_prefix_suffix(kle: str | None, facet: str, now: datetime) -> tuple[str, str]:
    """SBSYS-style numbers: `{kle}-{facet}-{serial}-{yy}`, e.g. 05.09.04-G01-7-26."""
    return f"{kle or DEFAULT_KLE}-{facet}-", f"-{now:%y}"


def next_serial(existing: list[str], prefix: str, suffix: str) -> int:
    serials = [0]
    for number in existing:
        middle = number[len(prefix):len(number) - len(suffix)]
        if number.startswith(prefix) and number.endswith(suffix) and middle.isdigit():
            serials.append(int(middle))
    return max(serials) + 1


class LocalArchive:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _case(self, case_number: str) -> EsdhCase | None:
        return (await self.session.execute(
            select(EsdhCase).where(EsdhCase.case_number == case_number))).scalar_one_or_none()

    async def find_case(self, case_number: str) -> CaseRef | None:
        case = await self._case(case_number)
        return _ref(case) if case else None

    async def search_cases(self, party: str) -> list[CaseRef]:
        rows = (await self.session.execute(select(EsdhCase).where(
            EsdhCase.party == party).order_by(EsdhCase.created_at))).scalars().all()
        return [_ref(r) for r in rows]

    async def create_case(self, case: NewCase, *, idempotency_key: str) -> CaseRef:
        existing = (await self.session.execute(select(EsdhCase).where(
            EsdhCase.idempotency_key == idempotency_key))).scalar_one_or_none()
        if existing is not None:
            return _ref(existing)
        prefix, suffix = case_prefix_suffix(case.kle, case.facet, utcnow())
        for _ in range(_SERIAL_ATTEMPTS):
            serial = await self._next_serial(prefix, suffix)
            row = EsdhCase(case_number=f"{prefix}{serial}{suffix}",
                           title=case.title[:500], kle=case.kle, facet=case.facet,
                           unit=case.unit, clerk=case.clerk, party=case.party,
                           idempotency_key=idempotency_key)
            try:
                # A case imported with this number meanwhile: take the next serial.
                async with self.session.begin_nested():
                    self.session.add(row)
            except IntegrityError:
                continue
            return _ref(row)
        raise TransientError(f"could not allocate a case number under {prefix}")

    async def _next_serial(self, prefix: str, suffix: str) -> int:
        """Take the next serial of a series; the counter row stays locked until commit."""
        series = f"{prefix}{suffix}"
        stmt = select(EsdhSerial).where(EsdhSerial.series == series).with_for_update()
        counter = (await self.session.execute(stmt)).scalar_one_or_none()
        if counter is None:
            # First case in this series here: start after any imported case numbers.
            numbers = list((await self.session.execute(select(EsdhCase.case_number).where(
                EsdhCase.case_number.like(f"{prefix}%{suffix}")))).scalars())
            insert = (pg_insert if self.session.get_bind().dialect.name == "postgresql"
                      else sqlite_insert)(EsdhSerial)
            await self.session.execute(insert.values(
                series=series, last=next_serial(numbers, prefix, suffix) - 1
            ).on_conflict_do_nothing())
            counter = (await self.session.execute(stmt)).scalar_one()
        counter.last += 1
        await self.session.flush()
        return counter.last

    async def add_document(self, case_number: str, document: NewDocument, *,
                           idempotency_key: str) -> DocumentRef:
        existing = (await self.session.execute(select(EsdhDocument).where(
            EsdhDocument.idempotency_key == idempotency_key))).scalar_one_or_none()
        case = await self._case(case_number)
        if existing is not None:
            owner = (await self.session.get(EsdhCase, existing.case_id))
            return DocumentRef(str(existing.id), owner.case_number if owner else case_number)
        if case is None:
            raise InvalidInput(f"case {case_number} is not in the local archive")
        row = EsdhDocument(id=uuid.uuid4(), case_id=case.id, item_id=document.item_id,
                           title=document.title[:500], blob_sha256=document.blob_sha256,
                           idempotency_key=idempotency_key)
        self.session.add(row)
        await self.session.flush()
        return DocumentRef(str(row.id), case.case_number)

    async def journalise(self, document_id: str) -> None:
        row = await self.session.get(EsdhDocument, uuid.UUID(document_id))
        if row is None:
            raise InvalidInput(f"document {document_id} is not in the local archive")
        if row.journalised_at is None:
            row.journalised_at = utcnow()
            await self.session.flush()
