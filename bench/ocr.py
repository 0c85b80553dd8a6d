"""OCR benchmark: pages per second of the whole scan path against tesseract run directly.

Renders N Danish A4 letters at 300 dpi (with speckle and skew, like a scanner's output) as PNG
files, then times
  1. tesseract itself, one process per page, the same command line the pipeline uses
     (`-l dan+eng --psm 1 txt hocr`, OMP_THREAD_LIMIT=1), run on `--workers` pages at a time:
     a. on the images the pipeline hands tesseract (the median-filtered page as PGM, made
        before the clock starts): the same work tesseract does inside the pipeline, so the
        difference to 2 is the pipeline's own overhead;
     b. on the PNG files as delivered (what running tesseract by hand on the scans costs);
     orientation and script detection (OSD) is part of the one `--psm 1` run on both sides;
  2. the scan path: ExtractionService.document() on each file (worker pool of `--workers`:
     sniffing, limits, decoding, median filter, PGM, tesseract, hOCR parsing), all pages
     submitted at once as the scan folder does;
  3. the same for the pages as one scanned PDF (adds rasterising with pypdfium2);
in `--rounds` rounds, taking turns, and prints the median pages/s, the pipeline's overhead over
tesseract, and mean character accuracy.

Wall time on a shared machine moves with whatever else runs, so the same comparison is also
made in CPU time (user + system, the process and its tesseract children, pages one after the
other, the three runs of each page in turn): tesseract on the same input against the
pipeline's jobs run in this process (decode, filter, PGM, tesseract, hOCR parsing; the worker
pool's pipe and pickling are not in it).

    .venv/bin/python bench/ocr.py --pages 8 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import io
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.ingest import jobs  # noqa: E402
from services.ingest.extraction import ExtractionService  # noqa: E402
from services.ingest.limits import Limits  # noqa: E402
from services.ingest.ocr import median3  # noqa: E402
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


def prepared(path: Path, folder: Path) -> Path:
    """The page as the pipeline hands it to tesseract (ocr.ocr_pil): grayscale, median
    filtered when the filter is on, uncompressed PGM."""
    page = Image.open(path).convert("L")
    if DENOISE:
        page = median3(page)
    out = folder / f"{path.stem}.pgm"
    page.save(out, format="PPM")
    return out


def cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def cpu_tesseract(path: Path) -> float:
    started = cpu()
    subprocess.run(["tesseract", str(path), str(path) + ".cpu", "-l", "dan+eng", "--psm", "1",
                    "txt", "hocr"], check=True, capture_output=True,
                   env={**os.environ, "OMP_THREAD_LIMIT": "1"})
    return cpu() - started


def cpu_pipeline(name: str, data: bytes, folder: Path) -> float:
    """The worker jobs of ExtractionService.document() on one file, run in this process."""
    limits = Limits(denoise=DENOISE)
    folder.mkdir(exist_ok=True)
    os.environ["OMP_THREAD_LIMIT"] = "1"  # as in the workers
    started = cpu()
    (folder / name).write_bytes(data)
    doc = jobs.expand_document(data, name, limits).parts[0]
    for index in doc.ocr:
        jobs.ocr_page(str(folder / name), doc.kind, index, limits)
    return cpu() - started


def cpu_compare(paths: list[Path], same: list[Path], folder: Path) -> tuple[float, float, float]:
    """CPU seconds of tesseract on the same input, on the PNG files, and of the scan path,
    page by page in turn (rotating the order), so that all three meet the same machine."""
    totals = [0.0, 0.0, 0.0]
    runs = [lambda n: cpu_tesseract(same[n]), lambda n: cpu_tesseract(paths[n]),
            lambda n: cpu_pipeline(paths[n].name, paths[n].read_bytes(), folder)]
    for n in range(len(paths)):
        for k in range(3):
            which = (n + k) % 3
            totals[which] += runs[which](n)
    return totals[0], totals[1], totals[2]


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
    parser.add_argument("--rounds", type=int, default=3)
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
        same = [prepared(path, Path(tmp)) for path in paths]
        buf = io.BytesIO()
        images = [Image.open(io.BytesIO(d)) for d in pngs]
        images[0].save(buf, format="PDF", resolution=300, save_all=True,
                       append_images=images[1:])
        files = [(f"p{n}.png", d) for n, d in enumerate(pngs)]
        runs = {"same": lambda: tesseract_direct(same, args.workers),
                "png": lambda: tesseract_direct(paths, args.workers),
                "scan": lambda: asyncio.run(pipeline(files, args.workers))[0],
                "pdf": lambda: asyncio.run(pipeline([("scan.pdf", buf.getvalue())],
                                                    args.workers))[0]}
        walls: dict[str, list[float]] = {k: [] for k in runs}
        for r in range(args.rounds):  # in turn, rotating the order: the same machine for all
            kinds = list(runs)
            for kind in kinds[r % 4:] + kinds[:r % 4]:
                walls[kind].append(runs[kind]())
        direct_same, direct, scan, pdf = (statistics.median(walls[k]) for k in runs)
        cpu_same, cpu_png, cpu_scan = cpu_compare(paths, same, Path(tmp) / "cpu")
        cpu_pdf = cpu_pipeline("scan.pdf", buf.getvalue(), Path(tmp) / "cpu")
        direct_acc = sum(accuracy((Path(str(p) + ".out.txt")).read_text(), truth)
                         for p in paths) / len(paths)
    _, texts = asyncio.run(pipeline(files, args.workers))
    scan_acc = sum(accuracy(t, truth) for t in texts) / len(texts)
    n = args.pages
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, {subprocess.run(['tesseract', '--version'], capture_output=True, text=True).stdout.splitlines()[0]}")  # noqa: E501
    print(f"{n} A4 pages at 300 dpi, 0.3% speckle, 1-1.7 deg skew, {args.workers} workers, "
          f"median filter {'on' if DENOISE else 'off'}; wall times: median of {args.rounds} "
          f"rounds, load average {os.getloadavg()[0]:.1f} at the end")
    print(f"tesseract, same input:   {n / direct_same:5.2f} pages/s ({direct_same / n:.2f} "
          "s/page; the pages the pipeline gives tesseract)")
    print(f"tesseract, PNG files:    {n / direct:5.2f} pages/s ({direct / n:.2f} s/page), "
          f"accuracy {direct_acc:.4f}")
    print(f"scan path, PNG files:    {n / scan:5.2f} pages/s ({scan / n:.2f} s/page), "
          f"accuracy {scan_acc:.4f}, overhead {100 * (scan - direct_same) / direct_same:+.1f}% "
          f"over tesseract on the same input, {100 * (scan - direct) / direct:+.1f}% over "
          "tesseract on the PNG files")
    print(f"CPU s/page: tesseract on the same input {cpu_same / n:.2f}, on the PNG files "
          f"{cpu_png / n:.2f}, the scan path's jobs {cpu_scan / n:.2f}: overhead "
          f"{100 * (cpu_scan - cpu_same) / cpu_same:+.1f}% over tesseract on the same input")
    print(f"scan path, one PDF:      {n / pdf:5.2f} pages/s ({pdf / n:.2f} s/page), "
          f"overhead {100 * (pdf - direct_same) / direct_same:+.1f}% (rasterising included), "
          f"{n} pages; CPU {cpu_pdf / n:.2f} s/page, "
          f"{100 * (cpu_pdf - cpu_same) / cpu_same:+.1f}%")


if __name__ == "__main__":
    main()
