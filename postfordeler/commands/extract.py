"""`postfordeler extract PATH`: what the classifier will see for a file, as JSON.

Takes an .eml, a PDF, an image (TIFF, PNG, JPEG, GIF), a Word document, a ZIP or a form
submission (.json) and prints the normalised item. Exit 0 with the item; exit 2 with one line
on stderr for input it refuses. Parsing and OCR run in worker processes with the configured
limits (size, pages, pixels, memory, time), and the whole command has a deadline, so it never
hangs, never prints a traceback and its memory stays bounded.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

EXIT_REFUSED = 2


def extract(
    path: Annotated[Path, typer.Argument(help="An .eml, PDF, image, Word, ZIP or form JSON file.")],
    timeout: Annotated[float, typer.Option(help="Seconds before giving up.")] = 600.0,
    with_text: Annotated[bool, typer.Option("--text/--no-text",
                                            help="Include attachment texts.")] = True,
) -> None:
    """Print the normalised item (JSON) the classifier would see for PATH."""
    try:
        item = asyncio.run(_extract(path, timeout, with_text))
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # refused input, or a bug: one line, never a traceback
        from shared.errors import InvalidInput

        reason = str(exc) if isinstance(exc, InvalidInput) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, TimeoutError):
            reason = f"gave up after {timeout:g} s"
        print(f"postfordeler extract: {path}: {reason}".replace("\n", " ")[:1000],
              file=sys.stderr)
        raise typer.Exit(EXIT_REFUSED) from None
    typer.echo(json.dumps(item, ensure_ascii=False, indent=2))


async def _extract(path: Path, timeout: float, with_text: bool) -> dict[str, Any]:
    from services.ingest.expand import Extraction, sniff
    from services.ingest.extraction import ExtractionService
    from services.ingest.formjson import form_extraction
    from shared.errors import InvalidInput
    from shared.settings import Settings

    service = ExtractionService.from_settings(Settings())
    try:
        if not await asyncio.to_thread(path.is_file):
            raise InvalidInput("no such file")
        service.limits.check_size((await asyncio.to_thread(path.stat)).st_size)
        data = await asyncio.to_thread(path.read_bytes)
        suffix = path.suffix.lower()
        kind = sniff(data, "", path.name)
        out: Extraction
        if suffix == ".msg" or data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
            raise InvalidInput("Outlook .msg and other OLE files are not supported: save the "
                               "mail as .eml")
        if suffix == ".json":
            channel, out = "form", form_extraction(data, service.limits)
        elif kind in ("", "text", "message") and suffix not in (".txt",):
            channel, out = "email", await asyncio.wait_for(service.mail(data), timeout)
        else:
            channel, out = "scan", await asyncio.wait_for(
                service.document(data, path.name), timeout)
        return _normalised(channel, out, with_text)
    finally:
        await service.pool.close()


def _normalised(channel: str, out: Any, with_text: bool) -> dict[str, Any]:
    import hashlib

    parts = out.parts
    pages: list[dict[str, Any]] = []
    text = out.text
    if channel == "scan" and parts and parts[0].kind in ("pdf", "image"):
        doc, parts = parts[0], parts[1:]
        text, pages = doc.text or "", [_page(p) for p in sorted(doc.pages, key=_number)]
    return {
        "channel": channel,
        "subject": out.subject,
        "sender": {"name": out.sender.name, "address": out.sender.address},
        "recipients": list(out.recipients),
        "auto_submitted": out.auto_submitted,
        "text": text,
        "pages": pages,
        "attachments": [{
            "index": n, "parent": p.parent, "filename": p.filename,
            "content_type": p.content_type, "size": len(p.data),
            "sha256": hashlib.sha256(p.data).hexdigest(), "kind": p.kind or None,
            "problem": p.problem,
            "pages": [_page(x) for x in sorted(p.pages, key=_number)],
            **({"text": p.text} if with_text else {"chars": len(p.text or "")}),
        } for n, p in enumerate(parts)],
        "defects": list(out.defects),
    }


def _number(page: Any) -> int:
    return int(page.number)


def _page(p: Any) -> dict[str, Any]:
    return {"page": p.number, "source": p.source, "chars": len(p.text),
            "confidence": p.confidence, "orientation": p.orientation, "problem": p.problem}
