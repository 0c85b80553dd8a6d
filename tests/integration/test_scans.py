"""The scan drop folder against real databases (SQLite and PostgreSQL) and the real extractor:
stability checks, archive and error folders with reasons, dedupe on content, a crash between
commit and move, and OCR results (pages, confidence) on the extracted item."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from services.ingest.extraction import ExtractionService
from services.ingest.extractor import CONSUMER, Extractor
from services.ingest.limits import Limits
from services.ingest.scans import ScanFolder
from services.ingest.workers import WorkerPool
from shared.contracts import Channel, ItemEvent, ItemExtracted, ItemState
from shared.db import Item
from shared.runtime import Consumer, Runtime
from shared.settings import DEMO_TENANT_DIR, Settings
from tests.conftest import async_wait_for, unavailable


def scan_png(text: str) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    font = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if not font.is_file():
        unavailable(f"the DejaVu font at {font}")
    page = Image.new("L", (1240, 600), 255)
    ImageDraw.Draw(page).text((100, 200), text, font=ImageFont.truetype(str(font), 46), fill=0)
    buf = io.BytesIO()
    page.save(buf, format="PNG", dpi=(300, 300))
    return buf.getvalue()


@pytest.fixture
async def scan_runtime(tmp_path: Path, db_url: str):  # type: ignore[no-untyped-def]
    if shutil.which("tesseract") is None:
        unavailable("tesseract")
    tenant = tmp_path / "tenant"
    tenant.mkdir()
    shutil.copy(DEMO_TENANT_DIR / "org.yaml", tenant / "org.yaml")
    (tenant / "mailboxes.yaml").write_text("mailboxes: []\n")
    settings = Settings(data_dir=tmp_path / "data", database_url=db_url, tenant_dir=tenant,
                        scan_dir=tmp_path / "scan", scan_mailbox=f"scan-{tmp_path.name}"[:60],
                        retry_base_delay=0.01)
    runtime = Runtime(settings)
    await runtime.start()
    service = ExtractionService(Limits(), WorkerPool(2, 2048))
    events: list[ItemEvent] = []

    async def record(event: ItemEvent, uow: object) -> None:
        events.append(event)

    await runtime.start_consumer(Consumer(CONSUMER, ("item.received",),
                                          Extractor(runtime.blobs, service).handle))
    await runtime.start_consumer(Consumer("test-extracted", ("item.extracted", "item.failed"),
                                          record))  # type: ignore[arg-type]
    yield runtime, service, events
    await service.pool.close()
    await runtime.stop()


async def _items(runtime: Runtime) -> list[Item]:
    async with runtime.uow() as uow:
        return list((await uow.session.execute(select(Item).where(
            Item.mailbox == runtime.settings.scan_mailbox))).scalars())


async def test_scan_folder_end_to_end(scan_runtime, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runtime, service, events = scan_runtime
    folder = ScanFolder(runtime, service)
    inbox = tmp_path / "scan"
    inbox.mkdir()
    letter = scan_png("Parkering AB 12 345, sag 2023-004512")
    (inbox / "brev.png").write_bytes(letter[:200])  # the scanner is still writing
    (inbox / "junk.bin").write_bytes(b"\x00\x01 not a scan")
    (inbox / ".hidden.pdf").write_bytes(b"%PDF-1.4")
    (inbox / "brev.tmp").write_bytes(b"partial")
    report = await folder.look()
    assert sorted(report.waiting) == ["brev.png", "junk.bin"]  # first look: nothing is taken
    with (inbox / "brev.png").open("ab") as fh:
        fh.write(letter[200:])
    report = await folder.look()
    assert report.failed == ["junk.bin"] and report.waiting == ["brev.png"]
    report = await folder.look()
    assert report.new == ["brev.png"]
    assert (tmp_path / "scan" / "Behandlet" / "brev.png").read_bytes() == letter
    reason = (tmp_path / "scan" / "Fejl" / "junk.bin.reason.txt").read_text()
    assert "unsupported file type" in reason
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == [".hidden.pdf", "brev.tmp"]

    async def extracted() -> bool:
        return any(isinstance(e, ItemExtracted) for e in events)

    await async_wait_for(extracted, timeout=60)
    event = next(e for e in events if isinstance(e, ItemExtracted))
    assert event.channel == Channel.SCAN and event.attachments == ()
    (page,) = event.pages
    assert page.source == "ocr" and page.confidence and page.confidence > 60
    text = (await runtime.blobs.get(event.text)).decode()
    assert "AB 12 345" in text and "2023-004512" in text
    items = {i.source_ref: i for i in await _items(runtime)}
    assert items["brev.png"].state == ItemState.EXTRACTED.value
    assert items["junk.bin"].state == ItemState.FAILED.value
    assert "unsupported" in (items["junk.bin"].failure_reason or "")


async def test_same_content_twice_and_crash_before_move(scan_runtime, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runtime, service, _ = scan_runtime
    folder = ScanFolder(runtime, service)
    inbox = tmp_path / "scan"
    inbox.mkdir()
    data = scan_png("Byggesag 2024-000123")
    (inbox / "a.png").write_bytes(data)
    await folder.look()
    # A crash after the commit, before the move: the file is still there.
    real_move = folder._move
    folder._move = lambda *a: (_ for _ in ()).throw(OSError("crash"))  # type: ignore[method-assign]
    report = await folder.look()
    assert report.waiting == ["a.png"]  # stored and committed, but not moved
    folder._move = real_move  # type: ignore[method-assign]
    (inbox / "a-copy.png").write_bytes(data)  # the bureau delivers the same page again
    report = await folder.look()
    assert report.duplicates == ["a.png"]  # only moved now
    report = await folder.look()
    assert report.duplicates == ["a-copy.png"]
    assert [i.source_ref for i in await _items(runtime)] == ["a.png"]
    assert sorted(p.name for p in (inbox / "Behandlet").iterdir()) == ["a-copy.png", "a.png"]


async def test_refused_scans_go_to_the_error_folder(scan_runtime, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runtime, service, _ = scan_runtime
    service.limits = Limits(max_pixels=100_000, max_bytes=50_000)
    folder = ScanFolder(runtime, service)
    inbox = tmp_path / "scan"
    inbox.mkdir()
    (inbox / "big.png").write_bytes(scan_png("x"))  # 1240x600 > 100,000 pixels
    (inbox / "huge.pdf").write_bytes(b"%PDF-1.4\n" + b"0" * 60_000)
    (inbox / "empty.pdf").write_bytes(b"")
    await folder.look()
    report = await folder.look()
    assert sorted(report.failed) == ["big.png", "empty.pdf", "huge.pdf"]
    errors = inbox / "Fejl"
    assert "pixels" in (errors / "big.png.reason.txt").read_text()
    assert "too large" in (errors / "huge.pdf.reason.txt").read_text()
    assert "empty" in (errors / "empty.pdf.reason.txt").read_text()
    states = {i.source_ref: (i.state, i.raw_sha256 is not None) for i in await _items(runtime)}
    assert states == {"big.png": ("failed", True), "empty.pdf": ("failed", True),
                      "huge.pdf": ("failed", True)}
