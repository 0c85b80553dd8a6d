"""Concurrent classifications share one call; a failing item fails alone; a lone one waits
only briefly."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from services.classifier.batching import Batcher


class Upper:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, items: Sequence[str]) -> list[str]:
        self.calls.append(list(items))
        if "bad" in items:
            raise ValueError("bad item")
        return [i.upper() for i in items]


async def test_concurrent_items_are_classified_in_one_call() -> None:
    fn = Upper()
    batcher = Batcher(fn, max_size=64, max_wait=0.05)
    results = await asyncio.gather(*(batcher.submit(f"item{i}") for i in range(10)))
    assert results == [f"ITEM{i}" for i in range(10)]
    assert fn.calls == [[f"item{i}" for i in range(10)]]


async def test_a_full_batch_goes_at_once_and_the_rest_follows() -> None:
    fn = Upper()
    batcher = Batcher(fn, max_size=4, max_wait=0.05)
    results = await asyncio.gather(*(batcher.submit(str(i)) for i in range(6)))
    assert results == [str(i) for i in range(6)]
    assert [len(c) for c in fn.calls] == [4, 2]


async def test_a_failing_item_fails_alone() -> None:
    fn = Upper()
    batcher = Batcher(fn, max_size=64, max_wait=0.01)
    results = await asyncio.gather(batcher.submit("a"), batcher.submit("bad"),
                                   batcher.submit("b"), return_exceptions=True)
    assert results[0] == "A" and results[2] == "B"
    assert isinstance(results[1], ValueError)


async def test_a_lone_item_is_not_held_up() -> None:
    fn = Upper()
    batcher = Batcher(fn, max_size=64, max_wait=0.001)
    assert await asyncio.wait_for(batcher.submit("x"), timeout=5) == "X"
    assert fn.calls == [["x"]]


async def test_a_cancelled_waiter_is_skipped() -> None:
    fn = Upper()
    batcher = Batcher(fn, max_size=64, max_wait=0.02)
    waiting = asyncio.ensure_future(batcher.submit("gone"))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await batcher.submit("kept") == "KEPT"
    assert fn.calls == [["kept"]]
