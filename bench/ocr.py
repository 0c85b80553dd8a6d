"""OCR benchmark: pages per second of the whole scan path against tesseract run directly.

Renders N Danish A4 letters at 300 dpi (with speckle and skew, like a scanner's output) as PNG
files, then times
  1. tesseract itself, one process per page, the same command line the pipeline uses
     (`-l dan+eng --psm 1 txt hocr`, OMP_THREAD_LIMIT=1), run on `--workers` pages at a time;
  2. the scan path: ExtractionService.document() on each file (worker pool of `--workers`:
     sniffing, limits, decoding, median filter, PGM, tesseract, hOCR parsing), all pages
     submitted at once as the scan folder does;
  3. the same for the pages as one scanned PDF (adds rasterising with pypdfium2);
and prints pages/s, the pipeline's overhead over tesseract, and mean character accuracy.

    .venv/bin/python bench/ocr.py --pages 8 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import io
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.ingest.extraction import ExtractionService  # noqa: E402
from services.ingest.limits import Limits  # noqa: E402
from services.ingest.workers import WorkerPool  # noqa: E402

# The letters and the accuracy measure are the OCR tests' own (not type-checked with bench/).
_ocr_tests = importlib.import_module("tests.unit.test_ocr")
LETTER, accuracy, render_letter = (_ocr_tests.LETTER, _ocr_tests.accuracy,
                                   _ocr_tests.render_letter)

DENOISE = "--no-denoise" not in sys.argv


def tesseract_direct(paths: list[Path], workers: int) -> float:
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}

    def one(path: Path) -> None:
        subprocess.run(["tesseract", str(path), str(path) + ".out", "-l", "dan+eng", "--psm",
                        "1", "txt", "hocr"], check=True, capture_output=True, env=env)

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(one, paths))
    return time.perf_counter() - started


async def pipeline(files: list[tuple[str, bytes]], workers: int) -> tuple[float, list[str]]:
    service = ExtractionService(Limits(denoise=DENOISE), WorkerPool(workers, 2048))
    await service.pool.run(len, b"warm", timeout=60)  # start the workers before timing
    started = time.perf_counter()
    results = await asyncio.gather(*(service.document(data, name) for name, data in files))
    elapsed = time.perf_counter() - started
    await service.pool.close()
    texts = [page.text for out in results
             for page in sorted(out.parts[0].pages, key=lambda p: p.number)]
    return elapsed, texts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-denoise", action="store_true",
                        help="No median filter: single-frame PNG/JPEG/TIFF go to tesseract as is")
    args = parser.parse_args()
    truth = "\n".join(LETTER)
    pngs = [render_letter(LETTER, skew=1.0 + 0.1 * n, noise=0.003, seed=n)
            for n in range(args.pages)]
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for n, data in enumerate(pngs):
            path = Path(tmp) / f"page{n}.png"
            path.write_bytes(data)
            paths.append(path)
        direct = tesseract_direct(paths, args.workers)
        direct_acc = sum(accuracy((Path(str(p) + ".out.txt")).read_text(), truth)
                         for p in paths) / len(paths)
    scan, texts = asyncio.run(pipeline([(f"p{n}.png", d) for n, d in enumerate(pngs)],
                                       args.workers))
    scan_acc = sum(accuracy(t, truth) for t in texts) / len(texts)
    from PIL import Image

    buf = io.BytesIO()
    images = [Image.open(io.BytesIO(d)) for d in pngs]
    images[0].save(buf, format="PDF", resolution=300, save_all=True, append_images=images[1:])
    pdf, pdf_texts = asyncio.run(pipeline([("scan.pdf", buf.getvalue())], args.workers))
    n = args.pages
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, {subprocess.run(['tesseract', '--version'], capture_output=True, text=True).stdout.splitlines()[0]}")  # noqa: E501
    print(f"{n} A4 pages at 300 dpi, 0.3% speckle, 1-1.7 deg skew, {args.workers} workers, "
          f"median filter {'on' if DENOISE else 'off'}")
    print(f"tesseract directly:      {n / direct:5.2f} pages/s ({direct / n:.2f} s/page), "
          f"accuracy {direct_acc:.4f}")
    print(f"scan path, PNG files:    {n / scan:5.2f} pages/s ({scan / n:.2f} s/page), "
          f"accuracy {scan_acc:.4f}, overhead {100 * (scan - direct) / direct:+.1f}%")
    print(f"scan path, one PDF:      {n / pdf:5.2f} pages/s ({pdf / n:.2f} s/page), "
          f"overhead {100 * (pdf - direct) / direct:+.1f}% (rasterising included), "
          f"{len(pdf_texts)} pages")


if __name__ == "__main__":
    main()
