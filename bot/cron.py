"""Digest schedules: APScheduler triggers built from the config, and the period a send belongs to.

Every replica builds the same trigger, so they all fire at the same instants; the *period* names that instant
(the cron fire time as a wall-clock minute in the digest's time zone, or ``floor(epoch / interval_s)``), and the
database records one send per (digest, period). Keying cron periods by local wall-clock time also makes a
fire time that repeats when the clocks go back (the second 02:30 on the last Sunday of October in Berlin) send
once, as cron does, instead of twice as APScheduler 3's trigger would.

Parsing a crontab is pure computation: the config validators use it to refuse a bad expression at start.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A cron job that starts this late (a busy or briefly stopped process) still sends for its fire time.
CRON_LOOKBACK = timedelta(minutes=10)


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ValueError naming it when it does not exist."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin or UTC)") from None


def crontab(expr: str, timezone: str) -> CronTrigger:
    """A 5-field crontab (minute hour day month day-of-week) in ``timezone``; ValueError explains a bad one."""
    tz = zone(timezone)
    try:
        return CronTrigger.from_crontab(expr, timezone=tz)
    except ValueError as e:
        raise ValueError(f"bad cron expression {expr!r}: {e}") from None


def interval(seconds: int) -> IntervalTrigger:
    """Every ``seconds``, aligned to the Unix epoch so that every replica fires at the same instants."""
    return IntervalTrigger(seconds=seconds, start_date=EPOCH, timezone=UTC)


def trigger_for(*, cron: str | None, interval_s: int | None, timezone: str) -> BaseTrigger:
    if cron is not None:
        return crontab(cron, timezone)
    if interval_s is None:
        raise ValueError("a digest needs 'cron' or 'interval_s'")
    return interval(interval_s)


def cron_period(trigger: CronTrigger, now: datetime) -> str | None:
    """The latest fire time at or before ``now`` (looking back ``CRON_LOOKBACK``), as a wall-clock minute in
    the trigger's zone, e.g. ``2026-03-29T09:00``; None when the trigger did not fire in that window."""
    latest: datetime | None = None
    t = trigger.get_next_fire_time(None, now - CRON_LOOKBACK)
    while t is not None and t <= now:
        latest = t
        t = trigger.get_next_fire_time(t, t + timedelta(seconds=1))
    if latest is None:
        return None
    return latest.astimezone(trigger.timezone).strftime("%Y-%m-%dT%H:%M")


def interval_period(interval_s: int, now: datetime) -> str:
    """Which ``interval_s``-long slot since the epoch ``now`` falls in."""
    return f"every-{interval_s}s-{int((now - EPOCH).total_seconds() // interval_s)}"


def fire_times(trigger: BaseTrigger, start: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times from ``start`` (inclusive), in UTC."""
    out: list[datetime] = []
    prev: datetime | None = None
    now = start
    while len(out) < count:
        t = trigger.get_next_fire_time(prev, now)
        if t is None:
            break
        out.append(t.astimezone(UTC))
        prev, now = t, t + timedelta(seconds=1)
    return out
