"""Every file of the shared MIME and bad-input corpora through ingest: mails through a Maildir
mailbox and the poller, PDFs and images through the scan folder, all extracted by the real
extractor consumer with its worker pool. Each must end extracted or failed with a reason,
within bounded time, with the worker pool still working afterwards and nothing lost."""

from __future__ import annotations

import mailbox
import shutil
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from services import ingest
from services.ingest.extraction import ExtractionService
from services.ingest.extractor import CONSUMER, Extractor
from services.ingest.limits import Limits
from services.ingest.scans import ScanFolder
from services.ingest.workers import WorkerPool
from shared.db import Item, SourceMessage
from shared.runtime import Consumer, Runtime
from shared.settings import DEMO_TENANT_DIR, Settings
from tests.conftest import CORPUS, async_wait_for, unavailable

MIME = CORPUS / "mime"
BAD = CORPUS / "bad"


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()
                  and p.suffix not in (".tsv",) and not p.name.startswith("README"))


@pytest.mark.slow
async def test_whole_corpus_ends_in_terminal_states(sqlite_url: str, tmp_path: Path) -> None:
    if not MIME.is_dir() or not BAD.is_dir():
        unavailable(f"the shared corpus at {CORPUS}")
    if shutil.which("tesseract") is None:
        unavailable("tesseract")
    mails, scans = _files(MIME), _files(BAD)
    tenant = tmp_path / "tenant"
    tenant.mkdir()
    shutil.copy(DEMO_TENANT_DIR / "org.yaml", tenant / "org.yaml")
    (tenant / "mailboxes.yaml").write_text(
        "mailboxes:\n  - {name: corpus, kind: maildir, path: maildir/corpus}\n")
    settings = Settings(data_dir=tmp_path / "data", database_url=sqlite_url, tenant_dir=tenant,
                        scan_dir=tmp_path / "scan", scan_mailbox="corpus-scan",
                        retry_base_delay=0.01)
    (tmp_path / "data" / "maildir").mkdir(parents=True)
    md = mailbox.Maildir(tmp_path / "data" / "maildir" / "corpus", create=True)
    for path in mails:
        md.add(path.read_bytes())
    inbox = tmp_path / "scan"
    inbox.mkdir()
    for path in scans:  # flattened: names are unique across the corpus's folders
        shutil.copy(path, inbox / f"{path.parent.name}-{path.name}")

    runtime = Runtime(settings)
    # Tight limits keep the run short; the bombs must be refused by them, not by luck.
    limits = Limits(max_pixels=40_000_000, max_pages=20, ocr_timeout=30, job_timeout=30)
    service = ExtractionService(limits, WorkerPool(2, 1536))
    await runtime.start()
    started = time.monotonic()
    try:
        await runtime.start_consumer(Consumer(CONSUMER, ("item.received",),
                                              Extractor(runtime.blobs, service).handle))
        report = await ingest.poll_once(runtime)
        assert report.errors == {}
        folder = ScanFolder(runtime, service)
        await folder.look()
        scan_report = await folder.look()
        taken = scan_report.new + scan_report.failed + scan_report.duplicates
        moved = [p.name for p in (inbox / "Behandlet").iterdir()] + [
            p.name for p in (inbox / "Fejl").iterdir() if not p.name.endswith(".reason.txt")]
        assert sorted(taken) == sorted(moved) and len(taken) == len(scans)

        async def settled() -> bool:
            async with runtime.uow() as uow:
                waiting = (await uow.session.execute(select(func.count()).select_from(Item)
                           .where(Item.state == "received"))).scalar_one()
            return waiting == 0

        await async_wait_for(settled, timeout=240, interval=0.5)
        elapsed = time.monotonic() - started
        async with runtime.uow() as uow:
            items = list((await uow.session.execute(select(Item))).scalars())
            sources = (await uow.session.execute(select(func.count()).select_from(
                SourceMessage).where(SourceMessage.mailbox == "corpus"))).scalar_one()
        # nothing lost: every mail file is recorded (an item, or a duplicate of one) and
        # moved out of the inbox; every scan file is in the archive or the error folder
        assert sources == len(mails)
        assert md.keys() == []
        assert [p.name for p in inbox.iterdir() if p.is_file()] == []
        states: dict[str, int] = {}
        for item in items:
            states[item.state] = states.get(item.state, 0) + 1
            # extracted, or a final state ingest gave it (failed; loop protection's
            # not_relevant for bounces and auto-replies)
            assert item.state in ("extracted", "failed", "not_relevant"), (
                item.source_ref, item.state)
            if item.state == "failed":
                assert item.failure_reason, item.source_ref
        print(f"\n{len(mails)} mails + {len(scans)} hostile files in {elapsed:.1f} s: {states}; "
              f"workers replaced: {service.pool.replaced}")
        failed = {i.source_ref for i in items if i.state == "failed"}
        for bomb in ("images-pillow-decompression_bomb.gif", "bad-ocrmypdf-hugemono.pdf"):
            assert bomb in failed
        assert await service.pool.run(len, b"alive", timeout=10) == 5
    finally:
        await service.pool.close()
        await runtime.stop()
