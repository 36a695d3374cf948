"""The database-backed core with an injected clock, for scheduler tests that call the sweeps directly."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.app import build_core, build_schedule
from bot.clock import FakeClock
from bot.config import Config, parse_config
from bot.schedule_service import ScheduleService
from bot.schemas import SubmitBody
from bot.service import ApprovalService
from bot.settings import Secret
from storage import repository as repo
from storage.db import Database
from storage.migrate import upgrade
from storage.models import OutboxItem
from tests.conftest import make_settings

CHANNEL = "C0APPROVALS"
ESCALATE_CHANNEL = "C0ESCALATE"
REVIEWERS = ["S0REVIEWERS", "U0DANA"]
ONCALL = "S0ONCALL"


class JumpClock:
    """A clock that runs at real speed from a fixed start and jumps forward on ``advance``: for running apps,
    whose outbox pacing waits real seconds, while the test skips minutes."""

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        self._t0 = time.monotonic()
        self._offset = timedelta()

    def now(self) -> datetime:
        return self._start + self._offset + timedelta(seconds=time.monotonic() - self._t0)

    def advance(self, seconds: float) -> datetime:
        self._offset += timedelta(seconds=seconds)
        return self.now()


def config(**extra: Any) -> Config:
    base: dict[str, Any] = {"slack": {"default_channel": CHANNEL}, "reviewers": REVIEWERS,
                            "escalation": {"channel": ESCALATE_CHANNEL, "mention": [ONCALL], "label": "escalation"}}
    return parse_config({**base, **extra})


def slack_settings(db_url: str, **kw: Any) -> Any:
    kw.setdefault("slack_bot_token", Secret("xoxb-test"))
    kw.setdefault("slack_signing_secret", Secret("test-secret"))
    return make_settings(db_url, **kw)


@dataclass
class Core:
    db: Database
    service: ApprovalService
    schedule: ScheduleService
    clock: FakeClock

    async def submit(self, *, agent: str = "agent-1", tool: str = "send_email", **fields: Any) -> dict[str, Any]:
        body = SubmitBody.model_validate({"action": {"tool": tool, "args": {"to": "a@example.com"}}, **fields})
        return (await self.service.submit(agent=agent, body=body)).request

    async def get(self, request_id: str) -> dict[str, Any]:
        return await self.service.get(request_id=request_id)

    async def outbox(self, kind: str | None = None) -> list[OutboxItem]:
        async with self.db.read() as s:
            return await repo.get_outbox(s, kind=kind)

    async def outbox_keys(self, kind: str | None = None) -> list[str]:
        return [o.key for o in await self.outbox(kind)]

    async def audit_kinds(self, request_id: str) -> list[str]:
        async with self.db.read() as s:
            return [e.kind for e in await repo.audit_for(s, request_id=request_id)]


@asynccontextmanager
async def open_core(db_url: str, cfg: Config | None = None, *, slack: bool = True,
                    clock: FakeClock | None = None) -> AsyncIterator[Core]:
    settings = slack_settings(db_url) if slack else make_settings(db_url)
    clock = clock or FakeClock()
    db, service, _tokens, _metrics = build_core(settings, config=cfg or config(), clock=clock)
    await upgrade(db)
    try:
        yield Core(db, service, build_schedule(settings, service), clock)
    finally:
        await db.close()
