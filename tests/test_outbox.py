"""callback_url webhooks through the outbox: signed (Standard Webhooks), retried with a stable id,
dead-lettered after a bounded number of tries, and delivered after a restart."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from bot.app import SignoffApp, Tuning
from bot.settings import Secret
from bot.webhooks import new_secret, verify
from storage import repository as repo
from tests.conftest import Live, make_settings, start_live
from tests.support.pgtemplate import migrated_database

FAST = dict(outbox_max_attempts=3, outbox_base_delay_s=0.05, outbox_poll_s=0.1)


@pytest.fixture
def pg_url(pg_server_url: str) -> str:
    """Overrides conftest's: a database already at the newest schema (a copy is faster than migrating)."""
    return migrated_database(pg_server_url)


class Receiver:
    """A loopback webhook receiver. ``script`` is what it answers to the first calls (a status, or
    "hang" to hold the connection open); after that it answers 200."""

    def __init__(self, script: list[int | str] | None = None) -> None:
        self.script = list(script or [])
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self._changed = asyncio.Event()
        self.release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        self.calls.append((dict(request.headers), await request.read()))
        self._changed.set()
        action = self.script.pop(0) if self.script else 200
        if action == "hang":
            await self.release.wait()
            action = 200
        return web.Response(status=int(action), text="ok" if action == 200 else "try later")

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for_calls(self, n: int, timeout: float = 20.0) -> None:
        async def reached() -> None:
            while len(self.calls) < n:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(reached(), timeout)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    try:
        yield r
    finally:
        await r.stop()


@pytest.fixture
def secret() -> str:
    return new_secret()


@pytest.fixture
async def hooked(db_url: str, secret: str) -> AsyncIterator[Live]:
    live = await start_live(db_url, tuning=Tuning(**FAST), webhook_secret=Secret(secret))
    try:
        yield live
    finally:
        await live.http.close()
        await live.app.stop()


async def submit(live: Live, callback_url: str | None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"action": {"tool": "issue_refund", "args": {"amount": 12}}, **extra}
    if callback_url:
        body["callback_url"] = callback_url
    status, out = await live.call("POST", "/v1/requests", json=body)
    assert status == 201, out
    assert "callback_url" not in out
    return dict(out)


async def outbox_rows(live_app: SignoffApp, rid: str) -> list[Any]:
    async with live_app.db.read() as s:
        return [o for o in await repo.get_outbox(s, kind="webhook") if o.request_id == rid]


async def audit(live_app: SignoffApp, rid: str) -> list[Any]:
    async with live_app.db.read() as s:
        return await repo.audit_for(s, request_id=rid)


async def settle(live_app: SignoffApp, rid: str, *, timeout: float = 20.0) -> Any:
    """Wait until the request's webhook row is delivered or dead; return it."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await outbox_rows(live_app, rid)
        if rows and all(r.delivered_at is not None or r.dead_at is not None for r in rows):
            assert len(rows) == 1
            return rows[0]
        assert time.monotonic() < deadline, rows
        await asyncio.sleep(0.05)


def check_signed(headers: dict[str, str], body: bytes, secret: str) -> None:
    now = int(time.time())
    assert verify(secret, headers, body, now=now)
    assert not verify(new_secret(), headers, body, now=now)
    assert not verify(secret, headers, body + b" ", now=now)
    assert headers["webhook-id"]
    assert abs(int(headers["webhook-timestamp"]) - now) < 300
    assert headers["webhook-signature"].startswith("v1,")
    assert headers["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("outcome", ["approve", "reject", "edit", "cancel"])
async def test_one_signed_post_per_terminal_decision(
    hooked: Live, receiver: Receiver, secret: str, outcome: str
) -> None:
    live = hooked
    req = await submit(live, receiver.url, labels=["a"])
    quiet = await submit(live, None)  # no callback_url: nothing is sent for it
    status, _ = await live.call("POST", f"/v1/requests/{req['id']}/labels", json={"add": ["b"]})
    assert status == 200
    if outcome == "cancel":
        status, out = await live.call("POST", f"/v1/requests/{req['id']}/cancel")
    else:
        extra = {"feedback": "too much"} if outcome == "reject" else {}
        if outcome == "edit":
            extra = {"args": {"amount": 10}}
        status, out = await live.call("POST", f"/v1/requests/{req['id']}/decision", token=live.reviewer_token,
                                      json={"decision": outcome, "reviewer": {"id": "U1", "name": "Dana"},
                                            **extra})
    assert status == 200, out
    await live.call("POST", f"/v1/requests/{quiet['id']}/decision", token=live.reviewer_token,
                    json={"decision": "approve"})
    row = await settle(live.app, req["id"])
    assert row.delivered_at is not None and row.attempts == 1
    assert await outbox_rows(live.app, quiet["id"]) == []
    if outcome != "cancel" and out["status"] != "rejected":
        status, _ = await live.call("POST", f"/v1/requests/{req['id']}/result", json={"ok": True})
        assert status == 200
    await live.call("POST", f"/v1/requests/{req['id']}/labels", json={"add": ["c"]})
    await asyncio.sleep(0.3)  # time for any (wrong) second delivery to arrive

    assert len(receiver.calls) == 1
    headers, raw = receiver.calls[0]
    check_signed(headers, raw, secret)
    event = json.loads(raw)
    assert event["type"] == f"request.{out['status']}"
    assert event["data"]["id"] == req["id"]
    assert event["data"]["status"] == out["status"]
    assert event["data"]["decision"] == out["decision"]
    assert event["timestamp"] == out["decided_at"]
    assert "callback_url" not in event["data"]
    assert "delivered" in [e.kind for e in await audit(live.app, req["id"])]


async def test_expiry_by_the_sweep_sends_the_webhook_too(hooked: Live, receiver: Receiver, secret: str) -> None:
    req = await submit(hooked, receiver.url, timeout_s=1)
    await receiver.wait_for_calls(1)  # the app's scheduler expires it and the outbox delivers the event
    headers, raw = receiver.calls[0]
    check_signed(headers, raw, secret)
    assert json.loads(raw)["type"] == "request.expired"
    assert json.loads(raw)["data"]["id"] == req["id"]
    assert "expired" in [e.kind for e in await audit(hooked.app, req["id"])]


async def test_retries_keep_the_webhook_id(hooked: Live, receiver: Receiver, secret: str) -> None:
    receiver.script = [500, 500]
    req = await submit(hooked, receiver.url)
    status, _ = await hooked.call("POST", f"/v1/requests/{req['id']}/decision", token=hooked.reviewer_token,
                                  json={"decision": "approve"})
    assert status == 200
    row = await settle(hooked.app, req["id"])
    assert row.delivered_at is not None and row.dead_at is None
    assert row.attempts == 3
    assert len(receiver.calls) == 3
    ids = {headers["webhook-id"] for headers, _ in receiver.calls}
    assert len(ids) == 1
    assert len({raw for _, raw in receiver.calls}) == 1  # the same event each time
    for headers, raw in receiver.calls:
        check_signed(headers, raw, secret)
    kinds = [e.kind for e in await audit(hooked.app, req["id"])]
    assert kinds.count("delivered") == 1 and "delivery-failed" not in kinds


async def test_dead_letter_after_bounded_tries(hooked: Live, receiver: Receiver) -> None:
    receiver.script = [500] * 10
    req = await submit(hooked, receiver.url)
    status, _ = await hooked.call("POST", f"/v1/requests/{req['id']}/decision", token=hooked.reviewer_token,
                                  json={"decision": "reject", "feedback": "no"})
    assert status == 200
    row = await settle(hooked.app, req["id"])
    assert row.dead_at is not None and row.delivered_at is None
    assert row.attempts == 3
    assert "500" in (row.last_error or "")
    await asyncio.sleep(0.5)
    assert len(receiver.calls) == 3  # nothing after the row died
    failed = [e for e in await audit(hooked.app, req["id"]) if e.kind == "delivery-failed"]
    assert len(failed) == 1
    assert failed[0].data["attempts"] == 3
    assert "500" in failed[0].data["error"]


async def test_delivery_survives_a_restart(db_url: str, secret: str, receiver: Receiver) -> None:
    """The first app is stopped while its delivery is in flight; a new app on the same database
    delivers the row, with the same webhook id."""
    receiver.script = ["hang"]
    first = await start_live(db_url, tuning=Tuning(**FAST), webhook_secret=Secret(secret))
    try:
        req = await submit(first, receiver.url)
        status, _ = await first.call("POST", f"/v1/requests/{req['id']}/decision", token=first.reviewer_token,
                                     json={"decision": "approve"})
        assert status == 200
        await receiver.wait_for_calls(1)
    finally:
        await first.http.close()
        await first.app.stop()
    rows = await _rows_on(db_url, req["id"])
    assert len(rows) == 1 and rows[0].delivered_at is None and rows[0].dead_at is None

    second = SignoffApp(make_settings(db_url, webhook_secret=Secret(secret)), tuning=Tuning(**FAST))
    await second.start()
    try:
        row = await settle(second, req["id"])
        assert row.delivered_at is not None
        assert len(receiver.calls) == 2
        assert receiver.calls[0][0]["webhook-id"] == receiver.calls[1][0]["webhook-id"]
        check_signed(*receiver.calls[1], secret)
    finally:
        await second.stop()


async def test_decision_made_while_the_server_is_down_is_delivered_at_start(
    db_url: str, secret: str, receiver: Receiver
) -> None:
    """The CLI decides while no server runs: its outbox row waits in the database for the next start."""
    from bot.app import build_core
    from bot.domain import Actor

    first = await start_live(db_url, tuning=Tuning(**FAST), webhook_secret=Secret(secret))
    try:
        req = await submit(first, receiver.url)
    finally:
        await first.http.close()
        await first.app.stop()
    db, service, _, _ = build_core(make_settings(db_url))
    try:
        await service.decide(request_id=req["id"], kind="approve", actor=Actor("dana", "Dana", "cli"))
    finally:
        await db.close()
    assert receiver.calls == []
    second = SignoffApp(make_settings(db_url, webhook_secret=Secret(secret)), tuning=Tuning(**FAST))
    await second.start()
    try:
        row = await settle(second, req["id"])
        assert row.delivered_at is not None
        assert len(receiver.calls) == 1
        check_signed(*receiver.calls[0], secret)
        assert json.loads(receiver.calls[0][1])["data"]["decision"]["by"] == {
            "id": "dana", "name": "Dana", "via": "cli"}
    finally:
        await second.stop()


async def _rows_on(db_url: str, rid: str) -> list[Any]:
    from storage.db import Database

    db = Database(db_url)
    try:
        async with db.read() as s:
            return [o for o in await repo.get_outbox(s, kind="webhook") if o.request_id == rid]
    finally:
        await db.close()
