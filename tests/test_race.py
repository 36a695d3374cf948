"""Fifty concurrent deciders and the expiry sweep on one request: exactly one wins (§6.2)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from bot.clock import iso
from storage import repository as repo
from storage.models import Request
from tests.conftest import Live
from tests.support.pgtemplate import migrated_database

TERMINAL_EVENTS = {"approved", "modified", "rejected", "expired", "cancelled", "edited"}
DECIDERS = 50


@pytest.fixture
def pg_url(pg_server_url: str) -> str:
    """Overrides conftest's: a database already at the newest schema (a copy is faster than migrating)."""
    return migrated_database(pg_server_url)


def _decision(i: int) -> dict[str, Any]:
    reviewer = {"id": f"U{i:04d}", "name": f"Reviewer {i:02d}"}
    kind = ("approve", "reject", "edit")[i % 3]
    body: dict[str, Any] = {"decision": kind, "reviewer": reviewer}
    if kind == "reject":
        body["feedback"] = f"no, says reviewer {i}"
    if kind == "edit":
        body["args"] = {"to": f"edited-{i}@example.com"}
    return body


async def _set_deadline(live: Live, rid: str, when: datetime) -> None:
    async with live.app.db.write() as s:
        await s.execute(update(Request).where(Request.id == rid).values(expires_at=when))


async def _race(live: Live, *, deadline_in_s: float | None) -> None:
    """Release the deciders over ~100 ms; with ``deadline_in_s`` the deadline falls inside that window
    and sweepers run throughout, so the sweep competes with the clicks."""
    status, req = await live.call("POST", "/v1/requests", json={
        "action": {"tool": "send_email", "args": {"to": "a@example.com"}},
        "callback_url": "http://127.0.0.1:9/hook",  # one webhook per terminal decision: counts winners too
    })
    assert status == 201
    rid = req["id"]
    release_at = datetime.now(UTC) + timedelta(seconds=0.05)
    if deadline_in_s is not None:
        await _set_deadline(live, rid, release_at + timedelta(seconds=deadline_in_s))
    rng = random.Random(rid)
    go = asyncio.Event()

    async def decider(i: int) -> tuple[int, dict[str, Any]]:
        await go.wait()
        await asyncio.sleep(rng.uniform(0, 0.1))
        return await live.call("POST", f"/v1/requests/{rid}/decision", token=live.reviewer_token,
                               json=_decision(i))

    async def sweeper() -> int:
        await go.wait()
        n = 0
        for _ in range(8):
            await asyncio.sleep(0.01)
            n += await live.app.service.expire_due()
        return n

    tasks = [asyncio.create_task(decider(i)) for i in range(DECIDERS)]
    sweeps = [asyncio.create_task(sweeper()) for _ in range(3)]
    await asyncio.sleep(max(0.0, (release_at - datetime.now(UTC)).total_seconds()))
    go.set()
    results = await asyncio.gather(*tasks)
    swept = sum(await asyncio.gather(*sweeps))

    async with live.app.db.read() as s:
        stored = await repo.get_request(s, request_id=rid)
        events = [e.kind for e in await repo.audit_for(s, request_id=rid)]
        webhooks = [o for o in await repo.get_outbox(s, kind="webhook") if o.request_id == rid]
    assert stored is not None and stored.status != "pending"

    winners = [out for status, out in results if status == 200]
    losers = [(status, out) for status, out in results if status != 200]
    assert len(winners) + len(losers) == DECIDERS
    if stored.status == "expired":
        assert winners == []
        assert swept <= 1
    else:
        assert len(winners) == 1, [w["decision"] for w in winners]
        assert swept == 0
        won = winners[0]
        assert won["status"] == stored.status
        assert won["decision"]["by"]["name"] == stored.decided_by_name
        assert won["decided_at"] == iso(stored.decided_at)
    when = stored.decided_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    for status, out in losers:
        assert status == 409, out
        assert out["error"]["code"] == "already_decided", out
        message = out["error"]["message"]
        assert when in message, (message, when)
        if stored.status == "expired":
            assert "expired" in message
        else:
            assert stored.decided_by_name in message, (message, stored.decided_by_name)
    assert len([e for e in events if e in TERMINAL_EVENTS]) == 1, events
    assert len(webhooks) == 1
    assert webhooks[0].payload["body"]["type"] == f"request.{stored.status}"
    status, after = await live.call("GET", f"/v1/requests/{rid}")
    assert after["status"] == stored.status


@pytest.mark.parametrize("deadline_in_s", [None, 0.04], ids=["deciders-only", "deadline-mid-race"])
async def test_fifty_deciders_and_the_sweep_have_one_winner(live: Live, deadline_in_s: float | None) -> None:
    for _ in range(3):
        await _race(live, deadline_in_s=deadline_in_s)


async def test_deciders_released_as_the_deadline_passes(live: Live) -> None:
    """A request with timeout_s=1; the clicks land around its deadline while the sweeps run."""
    status, req = await live.call("POST", "/v1/requests", json={
        "action": {"tool": "deploy", "args": {"env": "prod"}}, "timeout_s": 1})
    assert status == 201
    deadline = datetime.fromisoformat(req["expires_at"].replace("Z", "+00:00"))
    await asyncio.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds() - 0.02))
    results = await asyncio.gather(
        *(live.call("POST", f"/v1/requests/{req['id']}/decision", token=live.reviewer_token,
                    json=_decision(i)) for i in range(DECIDERS)),
        live.app.service.expire_due(),
    )
    answers = results[:-1]
    async with live.app.db.read() as s:
        stored = await repo.get_request(s, request_id=req["id"])
        events = [e.kind for e in await repo.audit_for(s, request_id=req["id"])]
    assert stored is not None and stored.status in ("approved", "rejected", "modified", "expired")
    assert len([e for e in events if e in TERMINAL_EVENTS]) == 1, events
    oks = [out for status, out in answers if status == 200]
    assert len(oks) == (0 if stored.status == "expired" else 1)
    assert all(status == 409 for status, _ in answers if status != 200)
    expected = "expired" if stored.status == "expired" else stored.decided_by_name
    assert all(expected in out["error"]["message"] for status, out in answers if status == 409)
