"""The figures of ``/signoff stats`` and the pure arithmetic behind them. No I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.domain import new_id

WINDOWS = (("24 h", timedelta(hours=24)), ("7 days", timedelta(days=7)))


@dataclass(frozen=True)
class Window:
    label: str
    counts: dict[str, int]  # by status, of requests submitted in the window

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class Stats:
    at: datetime
    windows: list[Window]
    decided: int                   # decisions by people in the last 7 days that the times are taken from
    median_s: float | None
    p90_s: float | None
    tools: list[tuple[str, int]]   # busiest, last 7 days
    reviewers: list[tuple[str, str, int]] = field(default_factory=list)  # (id, name, decisions), last 7 days


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) with linear interpolation between closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def id_floor(at: datetime) -> str:
    """The smallest request id that can be created at ``at`` or later: ids sort by creation time, so a time
    window over requests is an id range read through the primary key."""
    return new_id("req_", at)[:14] + "0" * 16


def duration(seconds: float | None) -> str:
    """``42 s``, ``3 min 5 s``, ``2 h 10 min``, ``1 d 3 h``."""
    if seconds is None:
        return "n/a"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s} s" if s else f"{m} min"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(h, 24)
    return f"{d} d {h} h" if h else f"{d} d"
