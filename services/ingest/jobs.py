"""The functions worker processes run (see workers.py); imported once by the fork server."""

from __future__ import annotations

from pathlib import Path

from . import expand, ocr, pdf
from .limits import Limits


def expand_mail(raw: bytes, limits: Limits) -> expand.Extraction:
    return expand.expand_mail(raw, limits)


def expand_files(files: list[tuple[str, str, bytes]], limits: Limits) -> expand.Extraction:
    return expand.expand_files(files, limits)


def expand_document(data: bytes, filename: str, limits: Limits) -> expand.Extraction:
    return expand.expand_document(data, filename, limits)


def ocr_page(path: str, kind: str, index: int, limits: Limits) -> ocr.OcrPage:
    """OCR of page `index` of the PDF or image file at `path`."""
    data = Path(path).read_bytes()
    if kind == "pdf":
        return ocr.ocr_pil(pdf.render_page(data, index, limits), limits)
    return ocr.ocr_image_page(data, index, limits, path)
