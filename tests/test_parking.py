"""Parked waits (bot/parking.py): a /wait whose request is pending is held as a bare socket, answered with the
same JSON a handler sends when the decision commits or the deadline passes, forgotten when its agent hangs
up, and answered (not dropped) when the server stops."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.app import Tuning
from storage.db import DatabaseBusy
from tests.conftest import Live, start_live
from tests.support.polling import until

NO_REREAD = Tuning(reread_every_s=30)


@pytest.fixture
async def lv(sqlite_url: str) -> AsyncIterator[Live]:
    live = await start_live(sqlite_url, tuning=NO_REREAD)
    try:
        yield live
    finally:
        await live.http.close()
        await live.app.stop()


def _open_fds() -> int | None:
    """How many descriptors this process has open (None where /proc does not tell)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


async def _open_wait(live: Live, rid: str, timeout_s: float = 25, version: str = "1.1", method: str = "GET",
                     extra: bytes = b"") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = "127.0.0.1", live.app.port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"{method} /v1/requests/{rid}/wait?timeout_s={timeout_s} HTTP/{version}\r\nHost: {host}\r\n"
                 f"Authorization: Bearer {live.agent_token}\r\n\r\n".encode() + extra)
    await writer.drain()
    return reader, writer


def _parse(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status_line, headers, body


async def _decide(live: Live, rid: str) -> dict[str, Any]:
    status, out = await live.call("POST", f"/v1/requests/{rid}/decision", token=live.reviewer_token,
                                  json={"decision": "approve"})
    assert status == 200, out
    return dict(out)


async def test_a_parked_wait_is_answered_with_the_decision_as_a_handler_would(lv: Live) -> None:
    req = await lv.submit()
    reader, writer = await _open_wait(lv, req["id"])
    await until(lambda: len(lv.app.parking) == 1, "the wait is parked")
    assert len(lv.app.service.waiters) == 1
    decided = await _decide(lv, req["id"])
    raw = await asyncio.wait_for(reader.read(), 10)  # to EOF: the answer closes the connection
    writer.close()
    status_line, headers, body = _parse(raw)
    assert status_line == "HTTP/1.1 200 OK"
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
    out = json.loads(body)
    assert out["status"] == "approved" and out["decision"] == decided["decision"]
    _, direct = await lv.call("GET", f"/v1/requests/{req['id']}")
    assert out == direct  # the same view a handler sends
    assert len(lv.app.parking) == 0 and len(lv.app.service.waiters) == 0
    _, metrics = await lv.call("GET", "/metrics")
    assert 'signoff_http_requests_total{code="200",method="GET",route="/v1/requests/{id}/wait"} 1.0' in metrics


async def test_a_parked_wait_is_answered_at_its_deadline_with_the_request_still_pending(lv: Live) -> None:
    req = await lv.submit()
    started = time.monotonic()
    reader, writer = await _open_wait(lv, req["id"], timeout_s=0.5, version="1.0")
    raw = await asyncio.wait_for(reader.read(), 10)
    elapsed = time.monotonic() - started
    writer.close()
    status_line, _, body = _parse(raw)
    assert status_line == "HTTP/1.0 200 OK"  # answered in the agent's own HTTP version
    assert json.loads(body)["status"] == "pending"
    assert 0.45 <= elapsed < 5
    assert len(lv.app.parking) == 0 and len(lv.app.service.waiters) == 0


async def test_waits_with_different_deadlines_are_each_answered_at_their_own(lv: Live) -> None:
    req = await lv.submit()
    waits = [await _open_wait(lv, req["id"], timeout_s=t) for t in (1.2, 0.3, 0.7)]
    started = time.monotonic()
    done_at: dict[float, float] = {}

    async def read(t: float, reader: asyncio.StreamReader) -> None:
        _, _, body = _parse(await reader.read())
        assert json.loads(body)["status"] == "pending"
        done_at[t] = time.monotonic() - started

    await asyncio.wait_for(asyncio.gather(*(read(t, r) for t, (r, _) in zip((1.2, 0.3, 0.7), waits,
                                                                               strict=True))), 10)
    for _, w in waits:
        w.close()
    assert done_at[0.3] < done_at[0.7] < done_at[1.2]


async def test_an_agent_that_hangs_up_is_forgotten_at_once(lv: Live) -> None:
    req = await lv.submit()
    _, writer = await _open_wait(lv, req["id"])
    await until(lambda: len(lv.app.parking) == 1, "the wait is parked")
    writer.close()
    await until(lambda: len(lv.app.parking) == 0 and len(lv.app.service.waiters) == 0,
                "the hung-up wait is forgotten")
    await _decide(lv, req["id"])  # nobody to answer, nothing breaks
    status, out = await lv.call("GET", f"/v1/requests/{req['id']}/wait?timeout_s=5")
    assert status == 200 and out["status"] == "approved"


async def test_every_agent_waiting_on_one_request_is_woken(lv: Live) -> None:
    req = await lv.submit()
    waits = [await _open_wait(lv, req["id"]) for _ in range(5)]
    await until(lambda: len(lv.app.parking) == 5, "five waits are parked")
    await _decide(lv, req["id"])
    for reader, writer in waits:
        _, _, body = _parse(await asyncio.wait_for(reader.read(), 10))
        writer.close()
        assert json.loads(body)["status"] == "approved"


async def test_an_error_while_answering_is_the_json_error_a_handler_sends(lv: Live, monkeypatch: Any) -> None:
    req = await lv.submit()
    reader, writer = await _open_wait(lv, req["id"])
    await until(lambda: len(lv.app.parking) == 1, "the wait is parked")

    async def busy(_ticket: Any) -> dict[str, Any]:
        raise DatabaseBusy("no connection")

    monkeypatch.setattr(lv.app.service, "finish_wait", busy)
    await _decide(lv, req["id"])
    status_line, headers, body = _parse(await asyncio.wait_for(reader.read(), 10))
    writer.close()
    assert status_line == "HTTP/1.1 503 Service Unavailable"
    assert headers["retry-after"] == "1"
    assert json.loads(body)["error"]["code"] == "unavailable"


async def test_a_pipelined_request_behind_a_wait_is_answered_in_order(lv: Live) -> None:
    """With another request already buffered behind the wait, the connection stays with aiohttp."""
    req = await lv.submit()
    reader, writer = await _open_wait(lv, req["id"], timeout_s=0.3,
                                      extra=b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert raw.count(b"HTTP/1.1 200 OK") == 2
    assert raw.index(b'"pending"') < raw.rindex(b"HTTP/1.1 200 OK")
    assert len(lv.app.parking) == 0


async def test_head_waits_in_the_handler(lv: Live) -> None:
    req = await lv.submit()
    reader, writer = await _open_wait(lv, req["id"], timeout_s=0.3, method="HEAD")
    await asyncio.sleep(0.1)
    assert len(lv.app.parking) == 0 and len(lv.app.service.waiters) == 1
    status_line, headers, body = _parse(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10))
    writer.close()
    assert status_line == "HTTP/1.1 200 OK" and int(headers["content-length"]) > 0 and body == b""


async def test_stopping_the_server_asks_parked_agents_to_call_again_instead_of_dropping_them(
        sqlite_url: str) -> None:
    live = await start_live(sqlite_url, tuning=NO_REREAD)
    try:
        req = await live.submit()
        waits = [await _open_wait(live, req["id"]) for _ in range(3)]
        await until(lambda: len(live.app.parking) == 3, "three waits are parked")
        started = time.monotonic()
        await live.app.stop()
        assert time.monotonic() - started < 5
        for reader, writer in waits:
            status_line, headers, body = _parse(await asyncio.wait_for(reader.read(), 10))
            writer.close()
            assert status_line == "HTTP/1.1 503 Service Unavailable"  # the client retries a 503
            assert headers["retry-after"] == "1"
            assert "call /wait again" in json.loads(body)["error"]["message"]
    finally:
        await live.http.close()


async def test_the_deadline_heap_does_not_keep_answered_waits(lv: Live) -> None:
    """Waits answered long before their deadline must not pile up in memory until it passes."""
    req = await lv.submit()
    for _ in range(5):
        waits = [await _open_wait(lv, req["id"], timeout_s=60) for _ in range(60)]
        await until(lambda: len(lv.app.parking) == 60, "sixty waits are parked")
        for _, writer in waits:
            writer.close()
        await until(lambda: len(lv.app.parking) == 0, "every hung-up wait is forgotten")
    assert len(lv.app.parking._deadlines) <= 130  # 300 if nothing were ever dropped


async def test_a_crowd_of_waits_decided_hung_up_and_timed_out_leaves_no_socket_or_ticket_behind(lv: Live) -> None:
    """200 waits on 40 requests: a quarter of the agents hang up, half the requests are decided, the rest
    time out. Every remaining agent gets the right answer, and afterwards nothing is parked, registered or
    left open."""
    fds_before = _open_fds()
    reqs = [await lv.submit() for _ in range(40)]
    waits = [(reqs[i % 40]["id"], *await _open_wait(lv, reqs[i % 40]["id"], timeout_s=1.0)) for i in range(200)]
    await until(lambda: len(lv.app.parking) == 200, "every wait is parked")
    rng = random.Random(4)
    gone = set(rng.sample(range(200), 50))
    for i in gone:
        waits[i][2].close()
    decided = {r["id"] for r in reqs[:20]}
    await asyncio.gather(*(_decide(lv, rid) for rid in decided))

    async def answer(rid: str, reader: asyncio.StreamReader) -> str:
        status_line, _, body = _parse(await reader.read())
        assert status_line == "HTTP/1.1 200 OK"
        return str(json.loads(body)["status"])

    kept = [w for i, w in enumerate(waits) if i not in gone]
    statuses = await asyncio.wait_for(asyncio.gather(*(answer(rid, r) for rid, r, _ in kept)), 15)
    for (rid, _, writer), status in zip(kept, statuses, strict=True):
        writer.close()
        assert status == ("approved" if rid in decided else "pending")
    await until(lambda: len(lv.app.parking) == 0 and len(lv.app.service.waiters) == 0, "nothing is left parked")
    if fds_before is not None:  # the client and server ends of the decisions' pooled connections may stay open
        await until(lambda: (_open_fds() or 0) <= fds_before + 45, "the parked sockets are closed")
