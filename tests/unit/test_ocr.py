"""OCR through the whole extraction path (worker pool, tesseract dan+eng, orientation,
confidence): character accuracy on the corpus images with ground truth and on Danish letters
rendered here at 300 dpi with noise and skew; and the worker pool's own guarantees."""

from __future__ import annotations

import io
import os
import random
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from services.ingest.extraction import ExtractionService
from services.ingest.limits import Limits
from services.ingest.workers import JobFailed, WorkerPool
from shared.errors import InvalidInput
from tests.conftest import CORPUS, unavailable

OCR = CORPUS / "ocr"
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
LETTER = [
    "Eksempelby Kommune",
    "Teknik og Miljø, Rådhustorvet 1, 9999 Eksempelby",
    "",
    "Vedrørende parkeringsafgift for køretøj AB 12 345",
    "Sagsnummer: 2023-004512, journalnummer 05.04.00-G01-12-23",
    "",
    "Kære Søren Østergård",
    "Vi har modtaget din klage over afgiften, som blev udstedt på",
    "Åboulevarden ved Ærøskøbing færgeleje. Klagen behandles af",
    "afdelingen for trafik og veje, og du får svar inden for fire uger.",
    "Har du spørgsmål, så skriv til os og oplys sagsnummeret.",
    "",
    "Med venlig hilsen",
    "Bjørn Kjærgaard, sagsbehandler",
]


def accuracy(found: str, truth: str) -> float:
    """Character accuracy: 1 - edit distance / length of the truth (whitespace normalised)."""
    a, b = " ".join(found.split()), " ".join(truth.split())
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return max(0.0, 1 - prev[-1] / max(1, len(b)))


def render_letter(lines: list[str], *, skew: float = 0.0, noise: float = 0.0,
                  turn: int = 0, seed: int = 7) -> bytes:
    """An A4 letter at 300 dpi (11 pt DejaVu Sans) as PNG, skewed, noisy, turned."""
    page = Image.new("L", (2480, 3508), 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(str(FONT), 46)
    y = 300
    for line in lines:
        draw.text((250, y), line, font=font, fill=0)
        y += 70
    if skew:
        page = page.rotate(skew, resample=Image.Resampling.BILINEAR, fillcolor=255, expand=False)
    if noise:
        rng = random.Random(seed)
        px = page.load()
        assert px is not None
        for _ in range(int(2480 * 3508 * noise)):
            x, yy = rng.randrange(2480), rng.randrange(3508)
            px[x, yy] = 0 if px[x, yy] > 128 else 255
    if turn:
        page = page.rotate(turn, expand=True)
    buf = io.BytesIO()
    page.save(buf, format="PNG", dpi=(300, 300))
    return buf.getvalue()


@pytest.fixture(scope="module")
def _tesseract() -> None:
    if shutil.which("tesseract") is None:
        unavailable("tesseract (scripts/install-system-packages.sh)")
    if not FONT.is_file():
        unavailable(f"the DejaVu font at {FONT}")


@pytest.fixture
async def service(_tesseract: None) -> AsyncIterator[ExtractionService]:
    svc = ExtractionService(Limits(), WorkerPool(2, 2048))
    yield svc
    await svc.pool.close()


def test_median_filter_is_pils_median() -> None:
    """The numpy sorting network gives exactly PIL's MedianFilter(3), edges included."""
    import numpy as np
    from PIL import ImageFilter

    from services.ingest.ocr import median3

    page = Image.open(io.BytesIO(render_letter(LETTER[:6], skew=1.5, noise=0.01, seed=2)))
    rng = np.random.default_rng(7)
    for image in (page.convert("L"), *(Image.fromarray(rng.integers(0, 256, shape, np.uint8))
                                       for shape in ((1, 1), (2, 3), (5, 8), (31, 17)))):
        assert np.array_equal(np.asarray(median3(image)),
                              np.asarray(image.filter(ImageFilter.MedianFilter(3))))


async def test_danish_letter_noise_and_skew(service: ExtractionService) -> None:
    truth = "\n".join(LETTER)
    out = await service.document(render_letter(LETTER, skew=1.5, noise=0.01), "brev.png")
    doc = out.parts[0]
    (page,) = doc.pages
    acc = accuracy(doc.text or "", truth)
    print(f"danish letter, 1.5 deg skew, 1% noise: accuracy {acc:.4f}, "
          f"confidence {page.confidence}")
    assert acc >= 0.98
    assert page.source == "ocr" and page.confidence is not None and page.confidence > 70
    for needle in ("AB 12 345", "2023-004512", "Søren Østergård", "Ærøskøbing"):
        assert needle in (doc.text or ""), needle


async def test_upside_down_page_is_read_and_its_orientation_recorded(
        service: ExtractionService) -> None:
    data = render_letter(LETTER[:8], turn=180)
    out = await service.document(data, "vendt.png")
    (page,) = out.parts[0].pages
    assert page.orientation == 180
    assert accuracy(out.parts[0].text or "", "\n".join(LETTER[:8])) >= 0.95


@pytest.mark.slow
@pytest.mark.parametrize(("image", "truth", "minimum"), [
    ("tesseract-test/phototest.tif", "tesseract-test/phototest.gold.txt", 0.97),
    ("tesseract-test/phototest-rotated-L.png", "tesseract-test/phototest.gold.txt", 0.97),
    ("tesseract-test/eurotext.tif", "tesseract-test/eurotext.txt", 0.90),
    ("tesseract-test/8087_054.3B.tif", "tesseract-test/8087_054.3B.txt", 0.85),
    ("ocrmypdf/linn.png", "ocrmypdf/linn.txt", 0.80),
])
async def test_corpus_accuracy(service: ExtractionService, image: str, truth: str,
                               minimum: float) -> None:
    if not (OCR / image).is_file():
        unavailable(f"the OCR corpus at {OCR}")
    out = await service.document((OCR / image).read_bytes(), Path(image).name)
    acc = accuracy(out.parts[0].text or "", (OCR / truth).read_text("utf-8", errors="replace"))
    print(f"{image}: accuracy {acc:.4f}, confidence {out.parts[0].pages[0].confidence}")
    assert acc >= minimum


async def test_scanned_pdf_pages_are_rasterised(service: ExtractionService) -> None:
    buf = io.BytesIO()
    pages = [Image.open(io.BytesIO(render_letter(LETTER[:6]))).convert("L") for _ in range(2)]
    pages[0].save(buf, format="PDF", resolution=300, save_all=True, append_images=pages[1:])
    out = await service.document(buf.getvalue(), "scan.pdf")
    doc = out.parts[0]
    assert [(p.number, p.source) for p in sorted(doc.pages, key=lambda p: p.number)] == [
        (1, "ocr"), (2, "ocr")]
    assert (doc.text or "").count("AB 12 345") == 2


async def test_multipage_tiff(service: ExtractionService) -> None:
    frames = [Image.open(io.BytesIO(render_letter([line]))).convert("1") for line in
              ("Side et: AB 12 345", "Side to: 2023-004512")]
    buf = io.BytesIO()
    frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:],
                   compression="group4", dpi=(300, 300))
    out = await service.document(buf.getvalue(), "scan.tif")
    texts = [p.text for p in sorted(out.parts[0].pages, key=lambda p: p.number)]
    assert "AB 12 345" in texts[0] and "2023-004512" in texts[1]


async def test_pool_kills_a_job_over_time_and_keeps_working() -> None:
    pool = WorkerPool(1, 512)
    try:
        started = time.monotonic()
        with pytest.raises(JobFailed, match="timed out"):
            await pool.run(time.sleep, 30, timeout=0.5)
        assert time.monotonic() - started < 10
        with pytest.raises(JobFailed, match="crashed"):
            await pool.run(os.abort, timeout=10)
        with pytest.raises(JobFailed, match="out of memory"):
            await pool.run(bytearray, 2 * 2**30, timeout=10)
        with pytest.raises(InvalidInput, match="OCR|readable|image"):
            from services.ingest import jobs

            await pool.run(jobs.expand_document, b"\x89PNG\r\n\x1a\nbroken", "x.png", Limits(),
                           timeout=10)
        assert await pool.run(len, b"still alive", timeout=10) == 11
        assert pool.replaced == 2
    finally:
        await pool.close()
