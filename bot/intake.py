"""Group commit for submissions: concurrent submits share one transaction.

A commit per request through aiosqlite tops out at a few hundred per second; committing everything that
queued up while the previous commit ran turns the fsync cost into a per-batch cost. Each caller still gets
its own result, and a batch that fails is retried item by item so one bad row never fails its neighbours.

One batch commits at a time; what queues up meanwhile becomes the next batch. (Two or three batches at once
were measured on PostgreSQL as well: smaller batches and the audit chain's lock made intake slower.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger("signoff.intake")

T = TypeVar("T")
R = TypeVar("R")


class GroupCommitter(Generic[T, R]):
    def __init__(self, commit: Callable[[Sequence[T]], Awaitable[list[R]]], *, max_batch: int = 256) -> None:
        self._commit = commit
        self._max_batch = max_batch
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._running: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, fut))
        self._start()
        return await fut

    def _start(self) -> None:
        if self._queue and self._running is None:
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            self._running = asyncio.create_task(self._run(batch))
            self._running.add_done_callback(self._finished)

    def _finished(self, _task: asyncio.Task[None]) -> None:
        self._running = None
        self._start()  # whatever queued up meanwhile is the next batch

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._commit([item for item, _ in batch])
        except Exception:
            if len(batch) == 1:
                _fail(batch[0][1])
                return
            log.warning("batch of %d submissions failed; committing them one by one", len(batch))
            for item, fut in batch:
                try:
                    (result,) = await self._commit([item])
                except Exception:
                    _fail(fut)
                else:
                    if not fut.done():
                        fut.set_result(result)
            return
        except BaseException:  # cancelled (shutdown): the callers must not wait forever
            for _, fut in batch:
                if not fut.done():
                    fut.cancel()
            raise
        for (_, fut), result in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(result)


def _fail(fut: asyncio.Future[R]) -> None:
    import sys

    exc = sys.exc_info()[1]
    if not fut.done() and exc is not None:
        fut.set_exception(exc)
