"""Pure rules of the approval flow: ids, statuses, transitions, quorum, routing. No I/O, no await."""

from __future__ import annotations

import fnmatch
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from bot.config import Route

STATUSES = ("pending", "approved", "modified", "rejected", "expired", "cancelled")
TERMINAL = frozenset(STATUSES[1:])
RISKS = ("low", "medium", "high", "critical")
VIAS = ("slack", "cli", "api", "policy", "scheduler")
ROLES = ("agent", "reviewer", "admin")
EXPIRY_FEEDBACK = "Expired: no reviewer decided before the deadline."
DECISION_STATUS = {"approve": "approved", "edit": "modified", "reject": "rejected"}
STATUS_VERB = {
    "approved": "approved",
    "modified": "approved with edits",
    "rejected": "rejected",
    "expired": "expired",
    "cancelled": "cancelled",
}

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


_RANDOM = bytearray()
# The millisecond and random part of the newest id this process made, for ids made within one millisecond.
_LAST = [0, 0]


def _after_fork() -> None:
    _RANDOM.clear()  # a forked child must never reuse the parent's bytes,
    _LAST[:] = [0, 0]  # nor continue its sequence (both would make the same next id)


os.register_at_fork(after_in_child=_after_fork)


def _random80() -> int:
    """80 bits from the OS's CSPRNG, read 4 KiB at a time (a system call per id cost a tenth of intake)."""
    if len(_RANDOM) < 10:
        _RANDOM.extend(secrets.token_bytes(4096))
    chunk = _RANDOM[-10:]
    del _RANDOM[-10:]
    return int.from_bytes(chunk, "big")


def new_id(prefix: str, now: datetime) -> str:
    """A sortable unique id: 48-bit millisecond time and 80 random bits, Crockford base32 (ULID layout).

    Ids made by one process within one millisecond count up from the first one's random part (ULID's
    monotonic variant), so they sort in the order they were made: requests submitted one after another list
    newest first even when they share a millisecond."""
    ms = int(now.timestamp() * 1000)
    rnd = _LAST[1] + 1 if ms == _LAST[0] and _LAST[1] < (1 << 80) - 1 else _random80()
    _LAST[0], _LAST[1] = ms, rnd
    value = (ms << 80) | rnd
    return prefix + "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


# 26 base32 digits as 13 pairs: each pair is 10 bits of the value, most significant first.
_PAIRS = [hi + lo for hi in _CROCKFORD.lower() for lo in _CROCKFORD.lower()]
_SHIFTS = range(120, -1, -10)


@dataclass(frozen=True)
class Actor:
    """Who did something, and through which surface."""

    id: str
    name: str
    via: str

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "via": self.via}


@dataclass(frozen=True)
class Principal:
    """The holder of an API token."""

    name: str
    role: str

    @property
    def may_decide(self) -> bool:
        return self.role in ("reviewer", "admin")

    @property
    def sees_all(self) -> bool:
        return self.role in ("reviewer", "admin")


def is_terminal(status: str) -> bool:
    return status in TERMINAL


def is_overdue(status: str, expires_at: datetime, now: datetime) -> bool:
    return status == "pending" and expires_at <= now


def quorum_reached(required: int, approvers: Iterable[str]) -> bool:
    """N distinct reviewers approved the same version."""
    return len(set(approvers)) >= required


def lost_race_message(status: str, by_name: str | None, at: datetime | None) -> str:
    """What a late decider is told: who decided and when."""
    verb = STATUS_VERB.get(status, status)
    when = at.strftime("%Y-%m-%d %H:%M:%S UTC") if at else "an earlier time"
    if status == "expired":
        return f"This request already expired at {when}."
    who = by_name or "someone else"
    return f"This request was already {verb} by {who} at {when}."


def match_route(
    routes: Sequence[Route], *, tool: str, risk: str, labels: Iterable[str], agent: str
) -> tuple[int, Route] | None:
    """The first route whose every given condition holds, with its index."""
    label_set = set(labels)
    for i, route in enumerate(routes):
        m = route.match
        if m.tool is not None and not fnmatch.fnmatchcase(tool, m.tool):
            continue
        if m.risk is not None and risk not in m.risk:
            continue
        if m.labels is not None and not set(m.labels) <= label_set:
            continue
        if m.agent is not None and not fnmatch.fnmatchcase(agent, m.agent):
            continue
        return i, route
    return None


def changed_args(before: dict[str, object], after: dict[str, object]) -> list[str]:
    """Names of arguments that an edit added, removed or changed, in a stable order."""
    keys = list(before) + [k for k in after if k not in before]
    return [k for k in keys if before.get(k, _MISSING) != after.get(k, _MISSING)]


_MISSING = object()
