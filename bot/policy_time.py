"""Time windows of policy rules: weekly days and hours on the wall clock of an IANA timezone. Pure.

Windows use the wall clock of their timezone (DST-correct through ``zoneinfo``): on the spring-forward day
the skipped hour is never inside, on the fall-back day the repeated hour is inside twice. An hours range that
wraps past midnight belongs to the day it starts on (``fri 22:00-06:00`` runs into Saturday morning); the
end is exclusive and may be ``24:00``; minutes count, seconds do not (17:59:59 is inside ``09:00-18:00``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_HOURS = re.compile(r"(\d\d):(\d\d)-(\d\d):(\d\d)")


def parse_hours(text: str) -> tuple[int, int]:
    """``"HH:MM-HH:MM"`` as minutes after midnight; the end may be ``24:00``; start and end differ."""
    m = _HOURS.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not 'HH:MM-HH:MM', e.g. '09:00-18:00'")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2 != 0):
        raise ValueError(f"{text!r} is not a valid time range (00:00 to 24:00)")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise ValueError(f"{text!r} is an empty range; use '00:00-24:00' for the whole day")
    return start, end


class LocalClock:
    """``now`` seen on the wall clock of each timezone, converted once per zone per evaluation."""

    __slots__ = ("now", "seen")

    def __init__(self, now: datetime) -> None:
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("now must be a timezone-aware datetime")
        self.now = now
        self.seen: dict[ZoneInfo, tuple[int, int]] = {}

    def weekday_minute(self, zone: ZoneInfo) -> tuple[int, int]:
        seen = self.seen.get(zone)
        if seen is None:
            local = self.now.astimezone(zone)
            seen = self.seen[zone] = (local.weekday(), local.hour * 60 + local.minute)
        return seen


class Window:
    """``inside``/``outside`` a weekly window: days, an hours range (may wrap midnight), a timezone."""

    __slots__ = ("days", "end", "hours", "inside", "start", "zone")

    def __init__(self, *, inside: bool, days: Sequence[str], hours: str, timezone: str) -> None:
        self.inside = inside
        self.days = frozenset(DAYS.index(d) for d in days)
        self.hours = hours
        self.start, self.end = parse_hours(hours)
        self.zone = ZoneInfo(timezone)

    def contains(self, weekday: int, minute: int) -> bool:
        if self.start < self.end:
            return weekday in self.days and self.start <= minute < self.end
        # Wraps past midnight: the early hours belong to the previous day's window.
        return (minute >= self.start and weekday in self.days) or (
            minute < self.end and (weekday - 1) % 7 in self.days
        )

    def holds(self, clock: LocalClock) -> bool:
        weekday, minute = clock.seen.get(self.zone) or clock.weekday_minute(self.zone)
        return self.contains(weekday, minute) is self.inside

    def why_not(self, clock: LocalClock) -> str:
        weekday, minute = clock.weekday_minute(self.zone)
        local = f"{DAYS[weekday]} {minute // 60:02d}:{minute % 60:02d} {self.zone.key}"
        days = ",".join(DAYS[d] for d in sorted(self.days))
        where = "inside" if self.contains(weekday, minute) else "outside"
        return f"{local} is {where} {days} {self.hours}"
