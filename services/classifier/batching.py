"""Classifying the items a consumer holds at once as one batch.

The classifier consumer handles up to `prefetch` messages concurrently. Classifying them one at
a time pays the model's fixed cost per item (a sparse product per vectoriser, the calibrator);
in one call it is paid once per batch (bench/classifier.py: about twice the items per second).
`Batcher.submit` waits at most `max_wait` seconds for company, so a lone item is not held up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    def __init__(self, fn: Callable[[Sequence[T]], Sequence[R]], *, max_size: int = 64,
                 max_wait: float = 0.002) -> None:
        self.fn = fn
        self.max_size = max_size
        self.max_wait = max_wait
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._timer: asyncio.TimerHandle | None = None

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self.max_size:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.max_wait, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        batch = [(item, f) for item, f in batch if not f.done()]  # cancelled waiters
        if not batch:
            return
        try:
            results = self.fn([item for item, _ in batch])
        except Exception:  # noqa: BLE001 - find the item(s) that fail, alone
            for item, future in batch:
                try:
                    future.set_result(self.fn([item])[0])
                except Exception as exc:  # noqa: BLE001 - the handler's own error path
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)
