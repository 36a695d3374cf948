"""Grants from cards ("Approve + allow this for 1 h"): stored in the database, matched from memory.

Submission must not wait on a query per request, so active grants are held in memory and reloaded every
couple of seconds (and at once after a local change); on several replicas a new or revoked grant therefore
takes effect everywhere within ``refresh_s``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot import domain
from bot.clock import Clock, iso
from bot.domain import Actor
from bot.errors import NotFound, ValidationFailed
from bot.policy import Grant, grant_matches
from storage import repository as repo
from storage.db import Database

log = logging.getLogger("signoff.grants")

MAX_GRANT_S = 24 * 3600


@dataclass(frozen=True)
class ActiveGrant:
    id: str
    grant: Grant
    created_by: str
    request_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "agent": self.grant.agent, "tool": self.grant.tool, "args": self.grant.args,
                "expires_at": iso(self.grant.expires_at), "created_by": self.created_by,
                "request_id": self.request_id}


class Grants:
    def __init__(self, *, db: Database, clock: Clock, refresh_s: float = 2.0) -> None:
        self.db = db
        self.clock = clock
        self.refresh_s = refresh_s
        self._active: list[ActiveGrant] = []

    def match(self, *, agent: str, tool: str, args: Mapping[str, Any], now: datetime) -> ActiveGrant | None:
        for g in self._active:
            if grant_matches(g.grant, agent=agent, tool=tool, args=args, now=now):
                return g
        return None

    async def refresh(self) -> list[ActiveGrant]:
        async with self.db.read() as s:
            rows = await repo.active_grants(s, now=self.clock.now())
        self._active = [
            ActiveGrant(r.id, Grant(agent=r.agent, tool=r.tool, args=r.args, expires_at=r.expires_at),
                        r.created_by_name, r.request_id)
            for r in rows
        ]
        return list(self._active)

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("reloading grants failed")
            await asyncio.sleep(self.refresh_s)

    async def create(self, *, agent: str, tool: str, args: dict[str, Any] | None, duration_s: int, actor: Actor,
                     request_id: str | None) -> ActiveGrant:
        if not 60 <= duration_s <= MAX_GRANT_S:
            raise ValidationFailed(f"a grant lasts between 1 minute and 24 hours, not {duration_s} s")
        now = self.clock.now()
        gid = domain.new_id("grt_", now)
        expires_at = now + timedelta(seconds=duration_s)
        row = dict(id=gid, agent=agent, tool=tool, args=args, request_id=request_id, created_by_id=actor.id,
                   created_by_name=actor.name, created_at=now, expires_at=expires_at)
        async with self.db.write() as s:
            await repo.add_grant(s, row=row)
            await repo.add_audit(s, events=[dict(
                request_id=request_id, kind="grant-created", actor_id=actor.id, actor_name=actor.name, via=actor.via,
                at=now, data={"grant": gid, "agent": agent, "tool": tool, "same_args": args is not None,
                              "expires_at": iso(expires_at)})])
        await self.refresh()
        created = next((g for g in self._active if g.id == gid), None)
        assert created is not None
        return created

    async def revoke(self, *, grant_id: str, actor: Actor) -> None:
        now = self.clock.now()
        async with self.db.write() as s:
            ok = await repo.revoke_grant(s, grant_id=grant_id, at=now, by=actor.name)
            if ok:
                await repo.add_audit(s, events=[dict(
                    request_id=None, kind="grant-revoked", actor_id=actor.id, actor_name=actor.name, via=actor.via,
                    at=now, data={"grant": grant_id})])
        if not ok:
            raise NotFound(f"no active grant {grant_id!r} (it may have expired or been revoked already)")
        await self.refresh()
