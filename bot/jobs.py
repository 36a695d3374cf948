"""The scheduler and its sweeps. Each sweep is an idempotent pass over database state, safe on every replica.

Jobs have fixed ids, coalesce missed runs and never overlap themselves (``max_instances=1``); they only call
``ScheduleService`` methods, so nothing that matters lives in the scheduler's memory. Digest jobs use the
digest's own trigger (a crontab in its time zone, or an epoch-aligned interval), so every replica fires at
the same instants and the database lets one of them send.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.cron import CRON_LOOKBACK, trigger_for
from bot.schedule_service import ScheduleService

log = logging.getLogger("signoff.jobs")

EXPIRE_JOB = "signoff.expire"
REMIND_JOB = "signoff.remind"
ESCALATE_JOB = "signoff.escalate"
DIGEST_JOB_PREFIX = "signoff.digest."


def build_scheduler(*, schedule: ScheduleService, expire_every_s: float = 1.0,
                    nudge_every_s: float = 2.0) -> AsyncIOScheduler:
    """Create (not start) the scheduler; ``start()`` must be called inside the running loop."""
    scheduler = AsyncIOScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1,
                                                               "misfire_grace_time": 30})
    sweeps: list[tuple[str, float, str, Callable[[], Awaitable[Any]]]] = [
        (EXPIRE_JOB, expire_every_s, "expired %s overdue request(s)", schedule.expire_due),
        (REMIND_JOB, nudge_every_s, "sent %s reminder(s)", schedule.remind_due),
        (ESCALATE_JOB, nudge_every_s, "escalated %s request(s)", schedule.escalate_due),
    ]
    for job_id, every_s, done, sweep in sweeps:
        scheduler.add_job(_run, "interval", seconds=every_s, id=job_id, replace_existing=True,
                          kwargs={"job_id": job_id, "done": done, "sweep": sweep})
    for digest in schedule.config.digests:
        job_id = DIGEST_JOB_PREFIX + digest.name
        trigger = trigger_for(cron=digest.cron, interval_s=digest.interval_s, timezone=digest.timezone)
        scheduler.add_job(_run, trigger, id=job_id, replace_existing=True,
                          misfire_grace_time=int(CRON_LOOKBACK.total_seconds()),
                          kwargs={"job_id": job_id, "done": "digest %s", "sweep":
                                  partial(_digest, schedule, digest.name)})
    return scheduler


async def _digest(schedule: ScheduleService, name: str) -> str | None:
    outcome = await schedule.run_scheduled_digest(name)
    return outcome.summary() if outcome is not None and outcome.ran else None


async def _run(*, job_id: str, done: str, sweep: Callable[[], Awaitable[Any]]) -> Any:
    try:
        result = await sweep()
    except Exception:
        log.exception("%s failed", job_id)
        return None
    if result:
        log.info(done, result)
    return result
