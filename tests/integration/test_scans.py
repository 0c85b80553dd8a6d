"""The scan drop folder against real databases (SQLite and PostgreSQL) and the real extractor:
stability checks, archive and error folders with reasons, dedupe on content, a crash between
commit and move, OCR results (pages, confidence) on the extracted item, and a scan whose
extraction fails after intake moving on from the archive to the error folder."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from services.ingest.extraction import ExtractionService
from services.ingest.extractor import CONSUMER, Extractor
from services.ingest.limits import Limits
from services.ingest.scanfiles import CONSUMER as SCAN_PLACEMENT
from services.ingest.scanfiles import relocate
from services.ingest.scans import ScanFolder
from services.ingest.workers import WorkerPool
from shared.contracts import Channel, ItemEvent, ItemExtracted, ItemFailed, ItemState
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
    placement = ScanFolder(runtime, service).failed_scans()
    await runtime.start_consumer(Consumer(SCAN_PLACEMENT, ("item.failed",), placement.handle))
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


async def test_scan_failing_in_extraction_ends_in_the_error_folder(  # type: ignore[no-untyped-def]
        scan_runtime, tmp_path: Path) -> None:
    runtime, service, events = scan_runtime
    # Intake's probe does not OCR, so the page passes it; the OCR job then overruns its
    # deadline in the worker pool (killed with its tesseract) and the extractor fails the item.
    service.limits = Limits(ocr_timeout=0.001)
    folder = ScanFolder(runtime, service)
    inbox = tmp_path / "scan"
    inbox.mkdir()
    data = scan_png("Journalnr. 2024-000777")
    (inbox / "side.png").write_bytes(data)
    (tmp_path / "scan" / "Fejl").mkdir()
    (tmp_path / "scan" / "Fejl" / "side.png").write_bytes(b"an earlier file of that name")
    await folder.look()
    report = await folder.look()
    assert report.new == ["side.png"]  # intake took it: archived for now

    errors, archive = inbox / "Fejl", inbox / "Behandlet"
    sha = hashlib.sha256(data).hexdigest()
    moved = errors / f"side-{sha[:12]}.png"

    async def placed() -> bool:
        return moved.is_file()

    await async_wait_for(placed, timeout=60)
    assert moved.read_bytes() == data and not (archive / "side.png").exists()
    assert (errors / "side.png").read_bytes() == b"an earlier file of that name"
    (item,) = await _items(runtime)
    assert item.state == ItemState.FAILED.value and item.raw_sha256 == sha
    assert "timed out" in (item.failure_reason or "")
    note = (errors / f"{moved.name}.reason.txt").read_text()
    assert "timed out" in note and f"item {item.id}" in note
    assert "2024-000777" not in note  # the reason, never the page's content
    failed = next(e for e in events if isinstance(e, ItemFailed))
    assert failed.stage == CONSUMER and failed.item_id == item.id

    # Redelivered after a crash: nothing moves twice, nothing is lost.
    args = (inbox, archive, errors, item.source_ref, sha, failed.reason, str(item.id))
    assert relocate(*args) == "already"
    # A crash after intake committed but before it moved the file: the late failure leaves
    # the file to intake, whose next look sees the content taken in and failed.
    moved.rename(inbox / "side.png")
    assert relocate(*args) == "waiting" and (inbox / "side.png").is_file()
    await folder.look()
    assert (await folder.look()).duplicates == ["side.png"]
    assert moved.read_bytes() == data and "timed out" in (errors / f"{moved.name}.reason.txt"
                                                          ).read_text()
    # ... and when the failure is committed while that look moves the file to the archive,
    # its second look at the item after the move places it.
    moved.rename(archive / "side.png")
    await folder._failed_meanwhile("side.png", sha)
    assert moved.read_bytes() == data and not (archive / "side.png").exists()


async def test_cpr_numbers_in_file_names_stay_out_of_the_logs(  # type: ignore[no-untyped-def]
        scan_runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runtime, service, _ = scan_runtime
    service.limits = Limits(max_pixels=100_000)
    folder = ScanFolder(runtime, service)
    inbox = tmp_path / "scan"
    inbox.mkdir()
    (inbox / "0102031234_brev.png").write_bytes(scan_png("x"))  # refused: too many pixels
    (inbox / "020304-5678.pdf").write_bytes(b"")  # refused: empty
    await folder.look()
    await folder.look()
    logged = capsys.readouterr()
    assert "scan refused" in logged.out + logged.err
    for number in ("0102031234", "020304-5678"):
        assert number not in logged.out + logged.err
