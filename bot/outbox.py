"""Delivers outbox rows at least once: leased claims, exponential backoff, dead-lettering.

Handlers are registered per ``kind``. A handler raises ``RetryLater`` (optionally with a delay such as a
``Retry-After``) or any exception to try again later; after ``max_attempts`` the row is dead-lettered with
an audit event and a log line. Rows survive restarts because they live in the database; a lease keeps two
workers (or replicas) from delivering the same row at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import timedelta

from bot.clock import Clock
from storage import repository as repo
from storage.db import Database
from storage.models import OutboxItem

log = logging.getLogger("signoff.outbox")

Handler = Callable[[OutboxItem], Awaitable[None]]


class RetryLater(Exception):
    def __init__(self, message: str, *, delay_s: float | None = None) -> None:
        super().__init__(message)
        self.delay_s = delay_s


class Defer(Exception):
    """Not a failure: try again after ``delay_s`` without counting an attempt (e.g. channel pacing)."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(f"deferred {delay_s:.2f}s")
        self.delay_s = delay_s


class GiveUp(Exception):
    """The delivery can never succeed (e.g. the channel does not exist): dead-letter it now."""


class OutboxWorker:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        wakeup: asyncio.Event,
        max_attempts: int = 12,
        base_delay_s: float = 1.0,
        max_delay_s: float = 600.0,
        lease_s: float = 60.0,
        idle_poll_s: float = 1.0,
        batch: int = 50,
        concurrency: int = 16,
    ) -> None:
        self.db = db
        self.clock = clock
        self.wakeup = wakeup
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.lease_s = lease_s
        self.idle_poll_s = idle_poll_s
        self.batch = batch
        self.handlers: dict[str, Handler] = {}
        self._sem = asyncio.Semaphore(concurrency)
        self._stopping = False

    def register(self, kind: str, handler: Handler) -> None:
        self.handlers[kind] = handler

    def request_stop(self) -> None:
        """Finish the deliveries in flight, then leave ``run``; nothing new is claimed."""
        self._stopping = True
        self.wakeup.set()

    async def run(self) -> None:
        self._stopping = False
        while not self._stopping:
            try:
                claimed = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox pass failed")
                claimed = 0
            if claimed >= self.batch or self._stopping:
                continue
            self.wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), timeout=self.idle_poll_s)

    async def run_once(self) -> int:
        """Claim due rows and deliver them concurrently; returns how many were claimed."""
        if not self.handlers:
            return 0
        async with self.db.write() as s:
            items = await repo.claim_outbox(
                s, now=self.clock.now(), limit=self.batch, lease_s=self.lease_s, kinds=list(self.handlers)
            )
        if not items:
            return 0
        settled: set[int] = set()
        try:
            await asyncio.gather(*(self._deliver(item, settled) for item in items))
        except asyncio.CancelledError:
            # Shutting down: hand unfinished rows back at once instead of leaving them leased.
            unfinished = [item.id for item in items if item.id not in settled]
            if unfinished:
                try:
                    await asyncio.wait_for(self._release(unfinished), timeout=5)
                except Exception as e:  # the lease runs out on its own; never hang a shutdown on this
                    log.warning("could not hand back %d outbox item(s) on shutdown: %s", len(unfinished), e)
            raise
        return len(items)

    async def _release(self, item_ids: list[int]) -> None:
        async with self.db.write() as s:
            await repo.outbox_release(s, item_ids=item_ids)

    async def drain(self, *, rounds: int = 100) -> None:
        """Deliver until nothing is due (tests and ``signoff`` one-shot commands)."""
        for _ in range(rounds):
            if await self.run_once() == 0:
                return

    async def _deliver(self, item: OutboxItem, settled: set[int]) -> None:
        handler = self.handlers[item.kind]
        async with self._sem:
            try:
                await handler(item)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                await self._failed(item, e)
                settled.add(item.id)
                return
        now = self.clock.now()
        async with self.db.write() as s:
            await repo.outbox_delivered(s, item_id=item.id, at=now)
            await repo.add_audit(s, events=[dict(
                request_id=item.request_id, kind="delivered", actor_id="outbox", actor_name="signoff",
                via="scheduler", at=now, data={"outbox_kind": item.kind, "key": item.key, "attempts": item.attempts},
            )])
        settled.add(item.id)

    async def _failed(self, item: OutboxItem, error: Exception) -> None:
        text = f"{type(error).__name__}: {error}"
        now = self.clock.now()
        if isinstance(error, Defer):
            async with self.db.write() as s:
                await repo.outbox_defer(s, item_id=item.id, next_attempt_at=now + timedelta(seconds=error.delay_s))
            return
        if item.attempts >= self.max_attempts or isinstance(error, GiveUp):
            log.error("outbox %s %s dead after %d attempts: %s", item.kind, item.key, item.attempts, text)
            async with self.db.write() as s:
                await repo.outbox_dead(s, item_id=item.id, at=now, error=text)
                await repo.add_audit(s, events=[dict(
                    request_id=item.request_id, kind="delivery-failed", actor_id="outbox",
                    actor_name="signoff", via="scheduler", at=now,
                    data={"outbox_kind": item.kind, "key": item.key, "attempts": item.attempts, "error": text},
                )])
            return
        delay = self.backoff(item.attempts)
        if isinstance(error, RetryLater) and error.delay_s is not None:
            delay = max(error.delay_s, 0.0)
        log.warning("outbox %s %s attempt %d failed (%s); retrying in %.1fs",
                    item.kind, item.key, item.attempts, text, delay)
        async with self.db.write() as s:
            await repo.outbox_retry(s, item_id=item.id, next_attempt_at=now + timedelta(seconds=delay), error=text)

    def backoff(self, attempts: int) -> float:
        """Exponential with full jitter on the upper half, capped."""
        ceiling = min(self.max_delay_s, self.base_delay_s * (2 ** max(attempts - 1, 0)))
        return ceiling / 2 + random.random() * ceiling / 2
