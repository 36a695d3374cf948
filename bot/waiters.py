"""Wake waiting agents the moment a decision commits.

In one process a decision resolves the futures of everyone waiting on that request: no polling. Across
replicas on PostgreSQL a dedicated connection LISTENs on ``signoff_decided``; as a fallback (and for
decisions written by another process on SQLite, such as the CLI) a periodic re-read of recently decided
requests wakes anyone a notification missed. The re-read runs only while someone is waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

log = logging.getLogger("signoff.waiters")

NOTIFY_CHANNEL = "signoff_decided"


class Waiters:
    """Futures of agents waiting on requests. A decision resolves them with the committed request JSON, so a
    woken agent is answered without reading the database again; wakes that carry only ids (NOTIFY, the
    re-read) resolve with None and the waiter reads the request itself."""

    def __init__(self) -> None:
        # A list per request (most have one waiter): a set costs four times the memory of a short list.
        self._waiting: dict[str, list[asyncio.Future[dict[str, Any] | None]]] = {}

    def __len__(self) -> int:
        return sum(len(s) for s in self._waiting.values())

    @property
    def ids(self) -> set[str]:
        return set(self._waiting)

    def register(self, request_id: str) -> asyncio.Future[dict[str, Any] | None]:
        fut: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(request_id, []).append(fut)
        return fut

    def discard(self, request_id: str, fut: asyncio.Future[dict[str, Any] | None]) -> None:
        futs = self._waiting.get(request_id)
        if futs is None:
            return
        with contextlib.suppress(ValueError):
            futs.remove(fut)
        if not futs:
            del self._waiting[request_id]

    def publish(self, request_ids: Iterable[str], views: Mapping[str, dict[str, Any]] | None = None) -> int:
        woken = 0
        for rid in request_ids:
            view = views.get(rid) if views else None
            for fut in self._waiting.pop(rid, ()):
                if not fut.done():
                    fut.set_result(view)
                    woken += 1
        return woken


class FallbackReread:
    """Every ``interval`` seconds while anyone waits, wake waiters of requests decided since the last look."""

    def __init__(
        self,
        waiters: Waiters,
        recently_decided: Callable[[datetime], Awaitable[list[str]]],
        now: Callable[[], datetime],
        interval: float,
    ) -> None:
        self._waiters = waiters
        self._recent = recently_decided
        self._now = now
        self.interval = interval
        self._since = now()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.tick()
            except Exception:  # the loop must survive a database hiccup
                log.exception("re-read of decided requests failed")

    async def tick(self) -> None:
        now = self._now()
        if len(self._waiters) == 0:
            self._since = now
            return
        # Overlap a little so a decision committed with an earlier timestamp is not missed.
        ids = await self._recent(self._since - timedelta(seconds=max(2.0, self.interval * 2)))
        self._since = now
        wanted = self._waiters.ids
        self._waiters.publish(i for i in ids if i in wanted)


class PgListener:
    """LISTEN on a dedicated asyncpg connection; reconnects with backoff when the connection drops."""

    def __init__(self, dsn: str, waiters: Waiters) -> None:
        self._dsn = dsn
        self._waiters = waiters
        self.connected = asyncio.Event()

    async def run(self) -> None:
        import asyncpg

        delay = 0.5
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(self._dsn)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, ev=lost: ev.set())
                await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
                self.connected.set()
                delay = 0.5
                await lost.wait()
                log.warning("LISTEN connection lost; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("LISTEN connection failed (%s); retrying in %.1fs", type(e).__name__, delay)
            finally:
                self.connected.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=2))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._waiters.publish(p for p in payload.split(",") if p)
