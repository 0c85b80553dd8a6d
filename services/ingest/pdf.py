"""PDF: the text layer of each page, and rasterising pages that have none for OCR (pypdfium2).

Runs in a worker process (see workers.py). Limits are checked before anything is decoded:
page count, and the pixels of the rendered page and of every image on it (a 35000x35000 JBIG2
image in an 11 KB file is a decompression bomb for a rasteriser).
"""

from __future__ import annotations

from typing import Any

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from .limits import Limits, Refused


def open_pdf(data: bytes, limits: Limits) -> pdfium.PdfDocument:
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        reason = str(exc).lower()
        if "password" in reason:
            raise Refused("PDF is encrypted with a password") from None
        raise Refused(f"not a readable PDF ({exc})") from None
    pages = len(pdf)
    if pages > limits.max_pages:
        pdf.close()
        raise Refused(f"PDF has {pages} pages (limit {limits.max_pages})")
    if pages == 0:
        pdf.close()
        raise Refused("PDF has no pages")
    return pdf


def page_texts(data: bytes, limits: Limits) -> list[str]:
    """The text layer of every page ("" where a page has none)."""
    pdf = open_pdf(data, limits)
    try:
        texts = []
        for i in range(len(pdf)):
            page = pdf[i]
            textpage = page.get_textpage()
            check_images(page, i, limits)
            texts.append(textpage.get_text_bounded().replace("\r\n", "\n").replace("\r", "\n"))
            textpage.close()
            page.close()
        return texts
    finally:
        pdf.close()


def render_page(data: bytes, index: int, limits: Limits) -> Any:
    """Page `index` as a grayscale PIL image at `limits.dpi`, or less for an oversized page."""
    pdf = open_pdf(data, limits)
    try:
        page = pdf[index]
        width, height = page.get_size()  # points
        scale = limits.dpi / 72
        if width * height * scale * scale > limits.max_pixels:
            scale = (limits.max_pixels / max(1.0, width * height)) ** 0.5
            if scale * 72 < 50:  # unreadable at that size anyway
                raise Refused(f"page {index + 1} too large ({width:.0f}x{height:.0f} pt)")
        check_images(page, index, limits)
        bitmap = page.render(scale=scale, grayscale=True)
        return bitmap.to_pil()
    finally:
        pdf.close()


def check_images(page: pdfium.PdfPage, index: int, limits: Limits) -> None:
    """Refuse a page holding an image over the pixel limit, before anything decodes it."""
    for obj in page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_IMAGE,), max_depth=3):
        w, h = obj.get_px_size()
        if w * h > limits.max_pixels:
            raise Refused(f"page {index + 1} holds an image of {w}x{h} pixels "
                          f"(limit {limits.max_pixels})")
