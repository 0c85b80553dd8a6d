"""Extraction as a service the consumer, the scan folder and the CLI share: parse in the
worker pool, then OCR every page that needs it, page by page in parallel (no I/O but a
temporary file per document that the OCR workers read)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from shared.errors import InvalidInput
from shared.settings import Settings

from . import jobs
from .expand import Extraction, Page, Part, join_pages
from .limits import Limits, Refused
from .workers import WorkerPool


class ExtractionService:
    def __init__(self, limits: Limits | None = None, pool: WorkerPool | None = None) -> None:
        self.limits = limits or Limits()
        self.pool = pool or WorkerPool()

    @classmethod
    def from_settings(cls, settings: Settings) -> ExtractionService:
        return cls(Limits.from_settings(settings),
                   WorkerPool(settings.extract_workers, settings.extract_worker_memory_mb))

    async def mail(self, raw: bytes) -> Extraction:
        self.limits.check_size(len(raw), "message")
        out: Extraction = await self.pool.run(jobs.expand_mail, raw, self.limits,
                                              timeout=self.limits.job_timeout)
        await self.ocr(out.parts)
        return out

    async def files(self, files: list[tuple[str, str, bytes]]) -> Extraction:
        """Files without a mail around them (a form's attachments), as attachments."""
        out: Extraction = await self.pool.run(jobs.expand_files, files, self.limits,
                                              timeout=self.limits.job_timeout)
        await self.ocr(out.parts)
        return out

    async def document(self, data: bytes, filename: str) -> Extraction:
        """A scan or a single file: InvalidInput when the document itself cannot be read."""
        self.limits.check_size(len(data))
        out: Extraction = await self.pool.run(jobs.expand_document, data, filename,
                                              self.limits, timeout=self.limits.job_timeout)
        await self.ocr(out.parts)
        if (why := document_failure(out)) and out.parts[0].kind in ("pdf", "image"):
            raise Refused(why)
        return out

    async def probe(self, data: bytes, filename: str) -> Extraction:
        """Parse without OCR: refuses what the document step would refuse, in milliseconds."""
        self.limits.check_size(len(data))
        result: Extraction = await self.pool.run(jobs.expand_document, data, filename,
                                                 self.limits, timeout=self.limits.job_timeout)
        return result

    async def ocr(self, parts: list[Part]) -> None:
        left = self.limits.max_pages
        with tempfile.TemporaryDirectory(prefix="pf-extract-") as tmp:
            tasks = []
            for n, part in enumerate(parts):
                if not part.ocr:
                    continue
                path = Path(tmp) / str(n)
                await asyncio.to_thread(path.write_bytes, part.data)
                if len(part.ocr) > left:
                    part.problem = f"more than {self.limits.max_pages} pages to OCR in one item"
                    part.ocr = part.ocr[:max(0, left)]
                left -= len(part.ocr)
                tasks += [self._page(part, str(path), index) for index in part.ocr]
            await asyncio.gather(*tasks)
        for part in parts:
            if part.ocr:
                part.ocr = []
                part.text = join_pages(part.pages)
                failed = [p for p in sorted(part.pages, key=lambda p: p.number) if p.problem]
                if failed and not part.problem:
                    part.problem = f"page {failed[0].number}: {failed[0].problem}"

    async def _page(self, part: Part, path: str, index: int) -> None:
        try:
            result = await self.pool.run(jobs.ocr_page, path, part.kind, index, self.limits,
                                         timeout=self.limits.ocr_timeout)
            part.pages.append(Page(index + 1, "ocr", result.text, result.confidence,
                                   result.orientation))
        except InvalidInput as exc:
            part.pages.append(Page(index + 1, "ocr", "", problem=str(exc)[:300]))

    async def serve(self) -> None:
        """Hold the pool until cancelled (runtime.spawn), then stop its workers."""
        try:
            await asyncio.Event().wait()
        finally:
            await self.pool.close()


def document_failure(out: Extraction) -> str | None:
    """Why a scanned document as a whole failed, if it did (part 0 is the document)."""
    doc = out.parts[0] if out.parts else None
    if doc is None:
        return "no document"
    return doc.problem


__all__ = ["ExtractionService", "Refused", "document_failure"]
