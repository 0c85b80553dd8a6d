"""The limits every parser works within, as one picklable value handed to worker processes."""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import InvalidInput
from shared.settings import Settings


class Refused(InvalidInput):
    """The input breaks a limit or is hostile (bomb, traversal): refused with a reason."""


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 50 * 2**20
    max_pages: int = 200
    max_pixels: int = 120_000_000
    dpi: int = 300
    archive_members: int = 500
    archive_bytes: int = 200 * 2**20
    archive_ratio: int = 200
    archive_depth: int = 3
    max_parts: int = 1000  # attachments of one item after unpacking everything
    nesting: int = 5  # forwarded mail / winmail.dat / archive levels, all kinds together
    languages: str = "dan+eng"
    job_timeout: float = 60.0
    ocr_timeout: float = 90.0
    denoise: bool = True  # median filter before OCR (see ocr.ocr_pil)
    min_text_chars: int = 16  # a PDF page with fewer characters in its text layer is OCR'd

    @classmethod
    def from_settings(cls, s: Settings) -> Limits:
        return cls(max_bytes=s.max_file_bytes, max_pages=s.max_pages, max_pixels=s.max_pixels,
                   dpi=s.ocr_dpi, archive_members=s.archive_max_members,
                   archive_bytes=s.archive_max_bytes, archive_ratio=s.archive_max_ratio,
                   archive_depth=s.archive_max_depth, languages=s.ocr_languages,
                   job_timeout=s.extract_timeout, ocr_timeout=s.ocr_page_timeout)

    def check_size(self, size: int, what: str = "file") -> None:
        if size > self.max_bytes:
            raise Refused(f"{what} too large: {size} bytes (limit {self.max_bytes})")
