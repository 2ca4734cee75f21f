"""Group commit: many concurrent requests, one archive write and one transaction per flush.

A request handler ``submit``s its request and waits; a single flush loop takes everything waiting (up to
``max_batch`` requests or ``max_batch_bytes``, so memory stays bounded), writes it in a worker thread, and wakes each handler with its outcome. While one flush writes, the next
requests queue up, so under load each flush carries many requests and the database sees few, large
COPYs instead of many small inserts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from anyio import to_thread

Write = Callable[[list[Any]], list[BaseException | None]]


class Overloaded(Exception):
    """More requests are waiting than the collector will hold; the client should retry later."""


class GroupCommitter:
    def __init__(
        self,
        write: Write,
        *,
        max_batch: int = 1_000,
        max_batch_bytes: int = 32 * 1024 * 1024,
        size_of: Callable[[Any], int] = lambda item: 0,
        linger_seconds: float = 0.005,
        max_pending: int = 20_000,
        on_flush: Callable[[int], None] | None = None,
    ) -> None:
        self.write = write
        self.max_batch = max_batch
        self.max_batch_bytes = max_batch_bytes
        self.size_of = size_of
        self.linger_seconds = linger_seconds
        self.max_pending = max_pending
        self.on_flush = on_flush
        self._queue: asyncio.Queue[tuple[Any, asyncio.Future[None]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    @property
    def full(self) -> bool:
        """Whether ``submit`` would refuse one more item now."""
        return self._queue.qsize() >= self.max_pending

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="group-commit")

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def submit(self, item: Any) -> None:
        """Return once ``item`` is durable; raise the error that kept it from being written."""
        if self.full:
            raise Overloaded(f"{self._queue.qsize()} requests are waiting to be written")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
        await future

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch, size = [first], self.size_of(first[0])
            if self.linger_seconds:
                await asyncio.sleep(self.linger_seconds)
            while len(batch) < self.max_batch and size < self.max_batch_bytes and not self._queue.empty():
                item = self._queue.get_nowait()
                batch.append(item)
                size += self.size_of(item[0])
            try:
                outcomes = await to_thread.run_sync(self.write, [item for item, _ in batch])
            except Exception as error:
                outcomes = [error] * len(batch)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if outcome is None:
                    future.set_result(None)
                else:
                    future.set_exception(outcome)
            for _ in batch:
                self._queue.task_done()
            if self.on_flush is not None:
                self.on_flush(len(batch))
