"""The reminder and escalation ladder as pure rules: what a new request is due, and what comes next.

Times are stored on the request when it is created (so a config change never reschedules work that is
already promised, and every replica sees the same plan); the sweeps only compare them with the clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bot.config import Config, Route


def _pick(config: Config, route: Route | None, key: str) -> Any:
    value = getattr(route, key, None) if route is not None else None
    return value if value is not None else getattr(config.timeouts, key)


def ladder_fields(config: Config, route: Route | None, *, now: datetime) -> dict[str, Any]:
    """The scheduling columns of a new request: the route's settings, else those of ``timeouts``."""
    remind_after = _pick(config, route, "remind_after_s")
    every = _pick(config, route, "remind_every_s") if remind_after else None
    escalate_after = _pick(config, route, "escalate_after_s")
    return {
        "remind_at": now + timedelta(seconds=remind_after) if remind_after else None,
        "reminders_sent": 0,
        "remind_every_s": every,
        "remind_max": (_pick(config, route, "remind_max") if every else 1) if remind_after else None,
        "escalate_at": now + timedelta(seconds=escalate_after) if escalate_after else None,
        "escalated_at": None,
        "on_expiry": route.on_expiry if route is not None else "reject",
        "extended_at": None,
    }


def next_reminder(*, sent: int, every_s: int | None, most: int | None, due: datetime,
                  now: datetime) -> datetime | None:
    """When the reminder after the ``sent``-th goes, or None when that was the last.

    The cadence follows the first reminder's time; after downtime it restarts from now rather than
    sending the missed reminders in a burst.
    """
    if every_s is None or most is None or sent >= most:
        return None
    step = timedelta(seconds=every_s)
    nxt = due + step
    return nxt if nxt > now else now + step


def extended_deadline(*, created_at: datetime, expires_at: datetime) -> datetime:
    """``on_expiry: escalate`` extends the deadline once, by the request's original timeout."""
    return expires_at + (expires_at - created_at)


def mention(slack_id: str) -> str:
    """``<!subteam^S…>`` for a user group, ``<@U…>`` for a user."""
    return f"<!subteam^{slack_id}>" if slack_id.startswith("S") else f"<@{slack_id}>"
