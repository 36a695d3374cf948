"""Waking waiting agents (§6.3): in process on commit, across replicas through LISTEN/NOTIFY, and by the
periodic re-read when the decision was written elsewhere (another process or core on SQLite)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from bot.app import SignoffApp, Tuning, build_core
from bot.domain import Actor
from tests.conftest import Live, make_settings, start_live
from tests.support.pgtemplate import migrated_database

# Far longer than any wake-up these tests wait for: if the re-read did the waking, the test fails.
NO_REREAD = Tuning(reread_every_s=30)


@pytest.fixture
def pg_url(pg_server_url: str) -> str:
    """Overrides conftest's: a database already at the newest schema (a copy is faster than migrating)."""
    return migrated_database(pg_server_url)


async def _waiting(app: SignoffApp, n: int = 1) -> None:
    """Until ``n`` agents are registered as waiting on the app (so a decision cannot come too early)."""
    for _ in range(2000):
        if len(app.service.waiters) >= n:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"only {len(app.service.waiters)} of {n} waiters registered")


async def _wait_call(live: Live, url: str, rid: str, timeout_s: float) -> tuple[int, Any, float]:
    started = time.monotonic()
    async with live.http.get(f"{url}/v1/requests/{rid}/wait?timeout_s={timeout_s}", headers=live.auth()) as r:
        return r.status, await r.json(), time.monotonic() - started


async def test_wait_wakes_in_process_when_a_decision_commits(db_url: str) -> None:
    live = await start_live(db_url, tuning=NO_REREAD)
    try:
        req = await live.submit()
        waiter = asyncio.create_task(_wait_call(live, live.url, req["id"], 25))
        await _waiting(live.app)
        status, _ = await live.call("POST", f"/v1/requests/{req['id']}/decision", token=live.reviewer_token,
                                    json={"decision": "reject", "feedback": "not this one"})
        assert status == 200
        status, out, elapsed = await asyncio.wait_for(waiter, 30)
        assert status == 200
        assert out["status"] == "rejected"
        assert out["decision"]["feedback"] == "not this one"
        assert elapsed < 20  # woken by the commit, not by the 25 s timeout
        assert len(live.app.service.waiters) == 0
    finally:
        await live.http.close()
        await live.app.stop()


async def test_wait_returns_current_state_after_timeout_and_at_once_when_decided(live: Live) -> None:
    req = await live.submit()
    status, out, _ = await _wait_call(live, live.url, req["id"], 0.3)
    assert status == 200 and out["status"] == "pending"
    await live.call("POST", f"/v1/requests/{req['id']}/decision", token=live.reviewer_token,
                    json={"decision": "approve"})
    status, out, elapsed = await _wait_call(live, live.url, req["id"], 30)
    assert out["status"] == "approved"
    assert elapsed < 20
    status, out = await live.call("GET", f"/v1/requests/{req['id']}/wait?timeout_s=61")
    assert status == 422
    assert "timeout_s" in out["error"]["message"]


async def test_many_waiters_on_one_request_all_wake(live: Live) -> None:
    req = await live.submit()
    waiters = [asyncio.create_task(_wait_call(live, live.url, req["id"], 25)) for _ in range(20)]
    await _waiting(live.app, 20)
    await live.call("POST", f"/v1/requests/{req['id']}/decision", token=live.reviewer_token,
                    json={"decision": "approve"})
    results = await asyncio.wait_for(asyncio.gather(*waiters), 30)
    assert {out["status"] for _, out, _ in results} == {"approved"}


async def test_listen_notify_wakes_a_waiter_on_another_replica(pg_url: str) -> None:
    a = await start_live(pg_url, tuning=NO_REREAD)
    b = SignoffApp(make_settings(pg_url), tuning=NO_REREAD)
    await b.start()
    try:
        req = await a.submit()
        waiter = asyncio.create_task(_wait_call(a, a.url, req["id"], 25))
        await _waiting(a.app)
        async with a.http.post(f"{b.url}/v1/requests/{req['id']}/decision", headers=a.auth(a.reviewer_token),
                               json={"decision": "approve", "reviewer": {"id": "U7", "name": "Bea"}}) as r:
            assert r.status == 200
        status, out, elapsed = await asyncio.wait_for(waiter, 30)
        assert status == 200
        assert out["status"] == "approved"
        assert out["decision"]["by"]["name"] == "Bea"
        assert elapsed < 20  # neither the 25 s timeout nor the 30 s re-read: the notification woke it
        # And the other way round: waiting on B, deciding on A.
        req2 = await a.submit()
        waiter = asyncio.create_task(_wait_call(a, b.url, req2["id"], 25))
        await _waiting(b)
        status, _ = await a.call("POST", f"/v1/requests/{req2['id']}/cancel")
        assert status == 200
        status, out, elapsed = await asyncio.wait_for(waiter, 30)
        assert out["status"] == "cancelled" and elapsed < 20
    finally:
        await b.stop()
        await a.http.close()
        await a.app.stop()


async def test_reread_wakes_a_waiter_when_another_core_decides_on_sqlite(sqlite_url: str) -> None:
    live = await start_live(sqlite_url, tuning=Tuning(reread_every_s=0.2))
    db, other, _, _ = build_core(make_settings(sqlite_url))  # e.g. the CLI in another process
    try:
        req = await live.submit()
        waiter = asyncio.create_task(_wait_call(live, live.url, req["id"], 25))
        await _waiting(live.app)
        await other.decide(request_id=req["id"], kind="approve", actor=Actor("dana", "Dana", "cli"))
        status, out, elapsed = await asyncio.wait_for(waiter, 30)
        assert status == 200
        assert out["status"] == "approved"
        assert out["decision"]["by"] == {"id": "dana", "name": "Dana", "via": "cli"}
        assert elapsed < 20
    finally:
        await db.close()
        await live.http.close()
        await live.app.stop()
