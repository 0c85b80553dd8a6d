"""A blocking client used from asyncio one call at a time, in a worker thread.

IMAP (imapclient) and EWS (exchangelib) clients block and are not safe to share between
threads. A connection subclass runs every call through `call`: an asyncio lock keeps callers in
order, and a thread lock still holds when a caller is cancelled while its thread runs on. A call
that fails drops the connection (`drop`), so the next call reconnects instead of reusing a
client in an unknown state.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any


class SerialConnection:
    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._thread_lock = threading.Lock()

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` in a worker thread, alone on this connection."""
        async with self._lock:
            return await asyncio.to_thread(self._locked, fn, *args)

    async def close(self) -> None:
        await self.call(self.drop)

    def drop(self) -> None:
        """Forget the client (in the worker thread); the next call connects afresh."""
        raise NotImplementedError

    def _locked(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self._thread_lock:
            try:
                return fn(*args)
            except Exception:
                self.drop()  # a broken connection is reopened on the next call
                raise
