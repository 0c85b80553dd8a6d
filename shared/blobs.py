"""Content-addressed blob store on the filesystem: raw messages, attachments, scans, texts.

A blob's name is its sha256, so storing the same bytes twice is free and a reference can be
verified. `put` returns only after the bytes are fsynced: a source message may be deleted or
moved once `put` returned and the item row committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from pathlib import Path
from typing import Protocol

from shared.contracts import BlobRef
from shared.errors import InvalidInput
from shared.files import write_atomic


class BlobStore(Protocol):
    async def put(self, data: bytes, content_type: str = ...) -> BlobRef: ...

    async def get(self, ref: BlobRef | str) -> bytes: ...


class FileBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    async def put(self, data: bytes, content_type: str = "application/octet-stream") -> BlobRef:
        return await asyncio.to_thread(self.put_sync, data, content_type)

    async def get(self, ref: BlobRef | str) -> bytes:
        return await asyncio.to_thread(self.get_sync, ref)

    def put_sync(self, data: bytes, content_type: str = "application/octet-stream") -> BlobRef:
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if target.exists():
            # Touched, so a retention run deleting this blob sees it is wanted again
            # (services/journal/retention.py); moved aside by one just now: written anew.
            with contextlib.suppress(FileNotFoundError):
                os.utime(target)
        if not target.exists():
            write_atomic(target, data)
        return BlobRef(sha256=digest, size=len(data), content_type=content_type)

    def get_sync(self, ref: BlobRef | str) -> bytes:
        digest = ref if isinstance(ref, str) else ref.sha256
        try:
            data = self.path(digest).read_bytes()
        except FileNotFoundError:
            raise InvalidInput(f"blob {digest} is missing") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise InvalidInput(f"blob {digest} is corrupt")
        return data

