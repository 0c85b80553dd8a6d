from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from shared.blobs import FileBlobStore
from shared.errors import InvalidInput


async def test_put_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    data = "Kære kommune æøå".encode()
    ref = await store.put(data, "text/plain; charset=utf-8")
    assert ref.sha256 == hashlib.sha256(data).hexdigest() and ref.size == len(data)
    assert await store.put(data) == ref.model_copy(update={"content_type":
                                                            "application/octet-stream"})
    assert await store.get(ref) == data
    assert await store.get(ref.sha256) == data
    assert len([p for p in tmp_path.rglob("*") if p.is_file()]) == 1  # no temp files left


async def test_missing_and_corrupt_blobs_are_refused(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    with pytest.raises(InvalidInput, match="missing"):
        await store.get("0" * 64)
    ref = await store.put(b"original")
    store.path(ref.sha256).write_bytes(b"tampered")
    with pytest.raises(InvalidInput, match="corrupt"):
        await store.get(ref)
