"""The scheduler and its sweeps. Each sweep is an idempotent pass over database state, safe on every replica."""

from __future__ import annotations

import logging
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.service import ApprovalService

log = logging.getLogger("signoff.jobs")

EXPIRE_JOB = "signoff.expire"


def build_scheduler(*, service: ApprovalService, expire_every_s: float = 1.0) -> AsyncIOScheduler:
    """Create (not start) the scheduler; ``start()`` must be called inside the running loop."""
    scheduler = AsyncIOScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1,
                                                               "misfire_grace_time": 30})
    scheduler.add_job(_sweep, "interval", seconds=expire_every_s, id=EXPIRE_JOB, replace_existing=True,
                      kwargs={"service": service})
    return scheduler


async def _sweep(service: ApprovalService) -> Any:
    try:
        n = await service.expire_due()
    except Exception:
        log.exception("expiry sweep failed")
        return None
    if n:
        log.info("expired %d overdue request(s)", n)
    return n
