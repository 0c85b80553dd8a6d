"""A pool of worker processes for parsing untrusted files and OCR, so the event loop never
blocks and a hostile file cannot take the service down.

Each job runs in a worker with an address-space limit (a decompression bomb gets MemoryError,
not the machine's memory) and a deadline: a worker that overruns it, or dies (a crash in a C
decoder), is killed with its whole process group (tesseract included) and replaced, and the
job fails with a reason. The event loop only waits on the worker's pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import structlog

from shared.errors import InvalidInput

log = structlog.get_logger(__name__)
MAX_JOBS_PER_WORKER = 200  # recycle workers now and then: C libraries may leak


class JobFailed(InvalidInput):
    """The job could not finish: timed out, ran out of memory, crashed or raised."""


def _worker_main(conn: Connection, memory_bytes: int) -> None:
    os.setpgrp()  # our own process group, so a kill also ends a running tesseract
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["OMP_THREAD_LIMIT"] = "1"  # tesseract: 1.4 s a page instead of 11 s on 2 cores
    import warnings

    warnings.simplefilter("ignore")  # decoders warn about every broken file; reasons are kept
    if memory_bytes > 0:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    while True:
        try:
            fn, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            reply: tuple[str, Any] = ("ok", fn(*args))
        except InvalidInput as exc:
            reply = ("invalid", str(exc))
        except MemoryError:
            reply = ("memory", "out of memory (worker limit)")
        except Exception as exc:  # a library's own error on a broken file
            reply = ("error", f"{type(exc).__name__}: {exc}"[:500])
        try:
            conn.send(reply)
        except MemoryError:
            conn.send(("memory", "out of memory (worker limit) sending the result"))
        if reply[0] == "memory":
            return  # state after MemoryError is doubtful: start afresh


class _Worker:
    def __init__(self, ctx: Any, memory_bytes: int) -> None:
        self.conn, child = ctx.Pipe()
        self.process: BaseProcess = ctx.Process(target=_worker_main, args=(child, memory_bytes),
                                                daemon=True, name="postfordeler-extract")
        self.process.start()
        child.close()
        self.jobs = 0

    def kill(self) -> None:
        pid = self.process.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.join(5)
        self.conn.close()


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


class WorkerPool:
    def __init__(self, size: int = 2, memory_mb: int = 2048) -> None:
        self.size = max(1, size)
        self._memory = memory_mb * 2**20
        # forkserver: workers are forked from a clean server process, not from this one with
        # its threads and event loop; the parsers are imported there once.
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(["services.ingest.jobs"])
        self._idle: list[_Worker] = []
        self._slots: asyncio.Semaphore | None = None
        self.replaced = 0  # workers killed or lost (metrics, tests)

    async def run(self, fn: Callable[..., Any], *args: Any, timeout: float) -> Any:
        """fn(*args) in a worker; JobFailed (with the reason) unless it returns in time."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.size)
        async with self._slots:
            worker = self._idle.pop() if self._idle else await asyncio.to_thread(
                _Worker, self._ctx, self._memory)
            try:
                status, value = await self._call(worker, fn, args, timeout)
            except BaseException:
                self.replaced += 1
                await asyncio.to_thread(worker.kill)
                raise
            worker.jobs += 1
            if status == "memory" or worker.jobs >= MAX_JOBS_PER_WORKER:
                await asyncio.to_thread(worker.kill)
            else:
                self._idle.append(worker)
        if status == "ok":
            return value
        if status == "invalid":
            raise InvalidInput(value)
        raise JobFailed(value)

    async def _call(self, worker: _Worker, fn: Callable[..., Any], args: tuple[Any, ...],
                    timeout: float) -> tuple[str, Any]:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.to_thread(worker.conn.send, (fn, args))
        except (OSError, EOFError) as exc:
            raise JobFailed(f"worker unavailable: {exc}") from None
        ready = loop.create_future()
        fd = worker.conn.fileno()
        loop.add_reader(fd, _wake, ready)
        try:
            await asyncio.wait_for(ready, timeout)
        except TimeoutError:
            raise JobFailed(f"timed out after {timeout:g} s") from None
        finally:
            loop.remove_reader(fd)
        try:
            reply: tuple[str, Any] = await asyncio.to_thread(worker.conn.recv)
        except (EOFError, OSError):
            await asyncio.to_thread(worker.process.join, 5)
            code = worker.process.exitcode
            why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit {code}"
            raise JobFailed(f"parser crashed ({why})") from None
        return reply

    async def close(self) -> None:
        workers, self._idle = self._idle, []
        for worker in workers:
            await asyncio.to_thread(worker.kill)

    def close_sync(self) -> None:
        for worker in self._idle:
            worker.kill()
        self._idle = []
