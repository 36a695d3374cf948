"""What ``/signoff`` and the App Home show, as plain data: ``bot.inbox`` fills it, ``bot.blocks_lists`` and
``bot.blocks_home`` render it. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.commands import PageRef
from bot.stats import Stats


@dataclass(frozen=True)
class PageResult:
    ref: PageRef
    requests: list[dict[str, Any]]
    total: int
    has_newer: bool
    has_older: bool
    at: datetime


@dataclass(frozen=True)
class ShowResult:
    request: dict[str, Any]
    at: datetime


@dataclass(frozen=True)
class HelpResult:
    at: datetime


@dataclass(frozen=True)
class HomeData:
    user_id: str
    waiting: list[dict[str, Any]]
    waiting_total: int
    pending_total: int
    decided: list[tuple[dict[str, Any], datetime]]
    decided_week: int
    at: datetime


Result = PageResult | ShowResult | HelpResult | Stats
