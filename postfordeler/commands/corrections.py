"""`postfordeler corrections export` and `train --corrections`: clerks' re-routes as training
data, read from the database (POSTFORDELER_DATABASE_URL) and the blob store.

An item counts when a person's re-route (or triage assignment) set its final unit: its latest
correction names the unit it still has (one sent back to triage and waiting there does not).
Items whose content retention has deleted, or whose text is no longer stored, are left out and
counted. The exported file holds message text,
personal data like the mailbox itself: it is written readable by its owner only (0600).
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from services.classifier.corrections import GROUP, Attachment, CorrectedItem, record, summary
from services.classifier.document import LabelledItem, from_labelled
from shared.blobs import BlobStore, FileBlobStore
from shared.contracts import ItemExtracted, ItemState
from shared.db import create_engine, session_factory
from shared.db.events import latest_event
from shared.db.models import Correction, Item, Retention
from shared.errors import ConfigurationError, InvalidInput
from shared.files import write_atomic
from shared.settings import Settings

app = typer.Typer(help="Clerks' corrections (re-routes) as training data.", no_args_is_help=True)


@dataclass
class Loaded:
    items: list[CorrectedItem] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1


async def _text(blobs: BlobStore, sha256: str) -> str:
    return (await blobs.get(sha256)).decode("utf-8", errors="replace")


async def load(s: AsyncSession, blobs: BlobStore, *, since: datetime | None = None) -> Loaded:
    last = (select(func.max(Correction.id).label("id")).group_by(Correction.item_id)
            .subquery())
    stmt = (select(Correction, Item, Retention.item_id).join(last, Correction.id == last.c.id)
            .join(Item, Item.id == Correction.item_id)
            .outerjoin(Retention, Retention.item_id == Item.id).order_by(Correction.id))
    if since is not None:
        # Stored as UTC; SQLite compares the text form, so the bound must be UTC as well.
        aware = since if since.tzinfo else since.replace(tzinfo=UTC)
        stmt = stmt.where(Correction.at >= aware.astimezone(UTC))
    found = Loaded()
    for correction, item, purged in (await s.execute(stmt)).all():
        if purged is not None:
            found.skip("content deleted by retention")
            continue
        if item.unit != correction.to_unit:
            found.skip("moved on since the correction")
            continue
        if item.state == ItemState.TRIAGE.value:
            # Sent back to triage by a clerk who could not place it: no unit was chosen, and
            # the fallback unit is not a label (the triage team's assignment will be).
            found.skip("waiting in triage")
            continue
        event = await latest_event(s, item.id, ItemExtracted)  # what was classified
        if event is None:
            found.skip("no extracted text")
            continue
        try:
            body = await _text(blobs, event.text.sha256)
            attachments = [Attachment(a.filename, a.content_type,
                                      await _text(blobs, a.text.sha256) if a.text else "")
                           for a in event.attachments]
        except InvalidInput:
            found.skip("text no longer stored")
            continue
        found.items.append(CorrectedItem(
            item_id=str(item.id), channel=item.channel, mailbox=event.mailbox,
            received_at=item.created_at, sender_name=event.sender.name,
            sender_address=event.sender.address, recipients=event.recipients,
            subject=event.subject, body=body, attachments=tuple(attachments),
            unit=correction.to_unit, clerk=correction.to_clerk, case_number=item.case_number,
            from_unit=correction.from_unit, reason=correction.reason,
            corrected_at=correction.at, cpr_present=item.personal_data))
    return found


def read_corrections(settings: Settings, *, since: datetime | None = None) -> Loaded:
    async def go() -> Loaded:
        engine = create_engine(settings.db_url)
        try:
            async with session_factory(engine)() as s:
                return await load(s, FileBlobStore(settings.blobs_path), since=since)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(go())
    except (SQLAlchemyError, OSError) as exc:
        # The driver's own message, not SQLAlchemy's (which repeats the statement).
        cause = getattr(exc, "orig", None) or exc
        raise ConfigurationError(f"cannot read corrections from the database: {cause}"
                                 ) from exc


def labelled(loaded: Loaded) -> list[LabelledItem]:
    return [from_labelled(record(c), group=GROUP) for c in loaded.items]


def write_private(path: Path, lines: list[str]) -> None:
    """The file readable by its owner only: it holds message text (personal data)."""
    write_atomic(path, "".join(line + "\n" for line in lines).encode("utf-8"))
    os.chmod(path, 0o600)  # write_atomic's temporary file already is; said, not assumed


def report(loaded: Loaded) -> str:
    units = ", ".join(f"{u} {n}" for u, n in summary(labelled(loaded)).items()) or "none"
    skipped = "; ".join(f"{n} {why}" for why, n in sorted(loaded.skipped.items()))
    return (f"{len(loaded.items)} corrected item(s) ({units})"
            + (f"; left out: {skipped}" if skipped else ""))


@app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", help="Item file (JSONL) to write.")],
    since: Annotated[datetime | None, typer.Option(
        help="Only corrections made from this time on (ISO 8601).")] = None,
) -> None:
    """Write the items whose final unit a clerk set, labelled with that unit, in the sample
    data's item format. The file contains message text: it is created with mode 0600."""
    try:
        loaded = read_corrections(Settings(), since=since)
        write_private(out, [json.dumps(record(c), ensure_ascii=False) for c in loaded.items])
    except (ConfigurationError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"wrote {out} (mode 0600, contains message text): {report(loaded)}")
