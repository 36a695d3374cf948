"""Digest schedules: APScheduler triggers built from the config, and the period a send belongs to.

Every replica builds the same trigger, so they all fire at the same instants; the *period* names that instant
(the cron fire time as a wall-clock minute in the digest's time zone, or ``floor(epoch / interval_s)``), and the
database records one send per (digest, period). Keying cron periods by local wall-clock time also makes a
fire time that repeats when the clocks go back (the second 02:30 on the last Sunday of October in Berlin) send
once, as cron does, instead of twice as APScheduler 3's trigger would.

Crontabs mean what they mean to cron, not what APScheduler 3's ``from_crontab`` makes of them: there, day of
week 0 is Monday (cron: Sunday; APScheduler's documented historical mistake, fixed only in 4.x) and a day of
month and a day of week both given must both match (cron: either). So the weekday field is translated to day
names, and the two day fields become an ``OrTrigger`` when both are restricted.

Parsing a crontab is pure computation: the config validators use it to refuse a bad expression at start.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
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


_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def crontab(expr: str, timezone: str) -> BaseTrigger:
    """A 5-field crontab (minute hour day month day-of-week) in ``timezone``; ValueError explains a bad one."""
    tz = zone(timezone)
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"bad cron expression {expr!r}: expected 5 fields (minute hour day month weekday), "
                         f"got {len(fields)}")
    minute, hour, dom, month, dow = fields
    try:
        days = _weekdays(dow)

        def make(day: str, day_of_week: str) -> CronTrigger:
            return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=day_of_week,
                               timezone=tz)

        if not dom.startswith("*") and not dow.startswith("*"):
            return OrTrigger([make(dom, "*"), make("*", days)])
        return make(dom, days)
    except ValueError as e:
        raise ValueError(f"bad cron expression {expr!r}: {e}") from None


def _weekdays(field: str) -> str:
    """Cron's day-of-week field (0 or 7 = Sunday, names, ranges, lists, steps) as APScheduler day names."""
    days: set[int] = set()
    for item in field.lower().split(","):
        base, slash, step_text = item.partition("/")
        if (slash and not step_text.isdigit()) or step_text == "0":
            raise ValueError(f"bad step in day of week {item!r}")
        step = int(step_text) if step_text else 1
        if base == "*":
            lo, hi = 0, 6
        elif "-" in base:
            first, last = base.split("-", 1)
            lo, hi = _day(first), _day(last)
        else:
            lo = _day(base)
            hi = 6 if slash else lo
        if lo > hi:
            raise ValueError(f"day of week range {item!r} runs backwards")
        days.update(d % 7 for d in range(lo, hi + 1, step))
    if len(days) == 7:
        return "*"
    return ",".join(_DAYS[d] for d in sorted(days))


def _day(token: str) -> int:
    if token.isdigit() and int(token) <= 7:
        return int(token)
    if token in _DAYS:
        return _DAYS.index(token)
    raise ValueError(f"{token!r} is not a day of week (0-7 or sun-sat)")


def interval(seconds: int) -> IntervalTrigger:
    """Every ``seconds``, aligned to the Unix epoch so that every replica fires at the same instants."""
    return IntervalTrigger(seconds=seconds, start_date=EPOCH, timezone=UTC)


def trigger_for(*, cron: str | None, interval_s: int | None, timezone: str) -> BaseTrigger:
    if cron is not None:
        return crontab(cron, timezone)
    if interval_s is None:
        raise ValueError("a digest needs 'cron' or 'interval_s'")
    return interval(interval_s)


def cron_period(trigger: BaseTrigger, now: datetime, tz: tzinfo) -> str | None:
    """The latest fire time at or before ``now`` (looking back ``CRON_LOOKBACK``), as a wall-clock minute in
    ``tz``, e.g. ``2026-03-29T09:00``; None when the trigger did not fire in that window."""
    latest: datetime | None = None
    for t in _fire_times_from(trigger, now - CRON_LOOKBACK):
        if t > now:
            break
        latest = t
    if latest is None:
        return None
    return latest.astimezone(tz).strftime("%Y-%m-%dT%H:%M")


def interval_period(interval_s: int, now: datetime) -> str:
    """Which ``interval_s``-long slot since the epoch ``now`` falls in."""
    return f"every-{interval_s}s-{int((now - EPOCH).total_seconds() // interval_s)}"


def fire_times(trigger: BaseTrigger, start: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times from ``start`` (inclusive), in UTC."""
    out: list[datetime] = []
    for t in _fire_times_from(trigger, start):
        if len(out) == count:
            break
        out.append(t)
    return out


def _fire_times_from(trigger: BaseTrigger, start: datetime) -> Iterator[datetime]:
    """Fire times from ``start`` on, in UTC, strictly increasing. The search moves on in UTC: arithmetic on
    the trigger's local times would step back an hour inside the hour that repeats when clocks go back."""
    after = start
    last: datetime | None = None
    while True:
        t = trigger.get_next_fire_time(None, after)
        if t is None:
            return
        t = t.astimezone(UTC)
        if last is not None and t <= last:  # never loop on a trigger that answers the same time again
            after = last + timedelta(minutes=1)
            continue
        yield t
        last, after = t, t + timedelta(seconds=1)
