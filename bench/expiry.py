"""Expiry under load (issue 5, point 8): 10,000 requests expiring in the same second.

Run ``.venv/bin/python bench/expiry.py [--store sqlite|postgres|both] [--requests N]``. The requests are
submitted through ``ApprovalService.submit`` (with Slack on, so each expiry plans a card update) while the
clock stands still, so all of them share one deadline. Then the clock runs at real speed towards that
deadline with the real scheduler and its 1 s expiry sweep, exactly as in ``signoff serve``; the figure is the
time from the deadline until every request is expired and every card update is queued in the outbox.
Target: <= 5 s. PostgreSQL is the throwaway server of ``tests/support/pg.py`` with fsync on.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)] if str(ROOT) not in sys.path else []

from sqlalchemy import func, select  # noqa: E402

from bot.app import build_core, build_schedule  # noqa: E402
from bot.config import parse_config  # noqa: E402
from bot.jobs import build_scheduler  # noqa: E402
from bot.schemas import SubmitBody  # noqa: E402
from bot.settings import Secret, Settings  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import OutboxItem, Request  # noqa: E402
from tests.support.pg import postgres_server  # noqa: E402

TARGET_S = 5.0
TIMEOUT_S = 60
LEAD_S = 2.0  # the clock starts running this long before the shared deadline


class BenchClock:
    """Stands still while the requests are submitted, then runs at real speed from ``run_from``."""

    def __init__(self, start: datetime) -> None:
        self._fixed: datetime | None = start
        self._base = start
        self._t0 = 0.0

    def now(self) -> datetime:
        if self._fixed is not None:
            return self._fixed
        return self._base + timedelta(seconds=time.monotonic() - self._t0)

    def run_from(self, when: datetime) -> None:
        self._base, self._t0, self._fixed = when, time.monotonic(), None


async def _counts(db: object, deadline: datetime) -> tuple[int, int]:
    async with db.read() as s:  # type: ignore[attr-defined]
        expired = (await s.execute(select(func.count()).where(Request.status == "expired"))).scalar_one()
        updates = (await s.execute(select(func.count()).where(OutboxItem.kind == "slack.update"))).scalar_one()
    return int(expired), int(updates)


async def run(url: str, n: int) -> tuple[float, float, float]:
    """Seconds from the deadline until all are expired and queued; the sweeps' wall time; their CPU time in
    this process (on a shared machine the wall time grows with the load, the CPU time does not)."""
    settings = Settings(database_url=url, slack_bot_token=Secret("xoxb-bench"), slack_signing_secret=Secret("x"))
    clock = BenchClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    config = parse_config({"slack": {"default_channel": "C0BENCH"}, "reviewers": ["S0REVIEWERS"]})
    db, service, _tokens, _metrics = build_core(settings, config=config, clock=clock)
    await upgrade(db)
    schedule = build_schedule(settings, service)
    try:
        start = clock.now()
        bodies = [SubmitBody.model_validate({"action": {"tool": "send_email", "args": {"to": f"c{i}@example.com"}},
                                             "context": {"summary": f"Refund {i}"}, "timeout_s": TIMEOUT_S,
                                             "labels": ["bench"]}) for i in range(n)]
        for i in range(0, n, 1000):
            await asyncio.gather(*(service.submit(agent="bench", body=b) for b in bodies[i : i + 1000]))
        deadline = start + timedelta(seconds=TIMEOUT_S)
        del bodies  # a server does not keep the bodies it was sent: do not make the sweep's GC walk them
        gc.collect()

        swept = cpu = 0.0
        finished = 0.0
        sweep = schedule.expire_due

        async def timed_sweep() -> int:
            nonlocal swept, cpu, finished
            t, c = time.perf_counter(), time.process_time()
            done = await sweep()
            if done:
                swept += time.perf_counter() - t
                cpu += time.process_time() - c
                finished = time.monotonic()
            return done

        schedule.expire_due = timed_sweep  # type: ignore[method-assign]
        scheduler = build_scheduler(schedule=schedule, expire_every_s=1.0)
        clock.run_from(deadline - timedelta(seconds=LEAD_S))
        scheduler.start()
        t_deadline = time.monotonic() + LEAD_S
        try:
            while True:  # checked rarely, so that the check does not slow the sweep it measures
                await asyncio.sleep(0.5)
                if time.monotonic() < t_deadline:
                    continue
                expired, updates = await _counts(db, deadline)
                if expired >= n and updates >= n:
                    return finished - t_deadline, swept, cpu
                if time.monotonic() - t_deadline > 120:
                    raise RuntimeError(f"only {expired} expired and {updates} updates queued after 120 s")
        finally:
            scheduler.shutdown(wait=False)
    finally:
        await db.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", choices=("sqlite", "postgres", "both"), default="both")
    ap.add_argument("--requests", type=int, default=10_000)
    args = ap.parse_args()
    results: list[tuple[str, float, float, float]] = []
    if args.store in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            results.append(("sqlite", *asyncio.run(run(f"sqlite:///{tmp}/bench.db", args.requests))))
    if args.store in ("postgres", "both"):
        with postgres_server(fsync=True) as url:
            results.append(("postgres", *asyncio.run(run(url, args.requests))))
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    print(f"{args.requests:,} requests expiring in the same second (target: all expired and card updates queued "
          f"within {TARGET_S:.0f} s of the deadline); {os.cpu_count()} CPUs, load average {load}")
    ok = True
    for store, latency, swept, cpu in results:
        verdict = "OK" if latency <= TARGET_S else "SLOW"
        ok &= latency <= TARGET_S
        print(f"  {store:<9} {latency:6.2f} s after the deadline  (sweeps: {swept:.2f} s wall, {cpu:.2f} s CPU in "
              f"this process; the rest is the wait for the next 1 s tick)  {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
