"""The asyncio client (``AsyncSignoff``) against a live server, in the same event loop as the server."""

from __future__ import annotations

import asyncio
import warnings
from datetime import datetime

import pytest

from signoff import (
    ActionRejected,
    ApprovalBypassed,
    ApprovalCancelled,
    ApprovalExpired,
    AsyncSignoff,
    AuthenticationError,
    SignoffUnavailable,
)
from tests.conftest import Live
from tests.test_client import FAST, Fault, all_requests, decide, faulty_proxy, fetch, free_port, pending


async def test_approved_call_runs_with_the_original_args(live: Live) -> None:
    calls: list[tuple[str, int]] = []
    async with AsyncSignoff(live.url, live.agent_token, retries=FAST) as gate:

        @gate.requires_approval(risk="high", labels=["needs-human-review"], context={"summary": "refund"})
        async def issue_refund(customer: str, amount: int = 10) -> str:
            calls.append((customer, amount))
            return "refunded"

        task = asyncio.create_task(issue_refund("cus_1"))
        (req,) = await pending(live)
        assert req["action"] == {"tool": "issue_refund", "args": {"customer": "cus_1", "amount": 10}}
        assert req["risk"] == "high" and req["context"] == {"summary": "refund"}
        assert not task.done()
        await decide(live, req["id"], "approve")
        assert await task == "refunded"
    assert calls == [("cus_1", 10)]
    assert (await fetch(live, req["id"]))["result"]["ok"] is True


async def test_edited_call_runs_with_the_reviewers_args(live: Live) -> None:
    calls: list[tuple[str, int]] = []
    async with AsyncSignoff(live.url, live.agent_token, retries=FAST) as gate:

        @gate.requires_approval()
        async def issue_refund(customer: str, amount: int) -> None:
            calls.append((customer, amount))

        task = asyncio.create_task(issue_refund("cus_1", amount=900))
        (req,) = await pending(live)
        await decide(live, req["id"], "edit", args={"customer": "cus_1", "amount": 90})
        await task
    assert calls == [("cus_1", 90)]


async def test_rejection_raises_with_the_reviewers_feedback(live_sqlite: Live) -> None:
    live = live_sqlite
    calls: list[str] = []
    async with AsyncSignoff(live.url, live.agent_token, retries=FAST) as gate:

        @gate.requires_approval()
        async def run_sql(query: str) -> None:
            calls.append(query)

        task = asyncio.create_task(run_sql("DELETE FROM users"))
        (req,) = await pending(live)
        out = await decide(live, req["id"], "reject", feedback="add a WHERE clause")
        with pytest.raises(ActionRejected) as caught:
            await task
    at = datetime.fromisoformat(out["decision"]["at"]).strftime("%H:%M")
    assert str(caught.value).startswith(f"Rejected by Dana at {at} UTC: add a WHERE clause\n")
    assert calls == []


async def test_expiry_and_cancel_raise(live_sqlite: Live) -> None:
    live = live_sqlite
    async with AsyncSignoff(live.url, live.agent_token, retries=FAST) as gate:

        @gate.requires_approval(timeout_s=1)
        async def deploy(service: str) -> None:
            raise AssertionError("must not run")

        with pytest.raises(ApprovalExpired):
            await asyncio.wait_for(deploy("api"), timeout=10)

        handle = await gate.request("deploy", {"service": "web"})
        waiting = asyncio.create_task(handle.wait())
        await gate.cancel(handle.id, "superseded by a newer deploy")
        with pytest.raises(ApprovalCancelled, match="superseded by a newer deploy"):
            await waiting


async def test_signoff_mode_off_calls_straight_through(live_sqlite: Live,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    live = live_sqlite
    monkeypatch.setenv("SIGNOFF_MODE", "off")
    async with AsyncSignoff(live.url, live.agent_token) as gate:

        @gate.requires_approval()
        async def post_update(text: str) -> str:
            return text

        with pytest.warns(ApprovalBypassed, match="post_update runs without human approval"):
            assert await post_update("hi") == "hi"
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a second call warns no more
            assert await post_update("again") == "again"
    assert await all_requests(live) == []


async def test_batch_waits_for_all_concurrently(live: Live) -> None:
    async with AsyncSignoff(live.url, live.agent_token, retries=FAST) as gate, gate.batch() as batch:
        first = await batch.request("send_email", {"to": "a@b.com"})
        second = await batch.request("send_email", {"to": "b@b.com"})
        waiting = asyncio.create_task(batch.wait_all(timeout=10))
        await decide(live, second.id, "approve")
        await decide(live, first.id, "edit", args={"to": "c@b.com"})
        decisions = await waiting
    assert [(d.request_id, d.status) for d in decisions] == [(first.id, "modified"), (second.id, "approved")]
    assert decisions[0].final_args == {"to": "c@b.com"}


async def test_retries_keep_one_idempotency_key(live_sqlite: Live) -> None:
    live = live_sqlite
    faults = [Fault("POST", "/v1/requests", "503"), Fault("POST", "/v1/requests", "drop")]
    async with faulty_proxy(live, *faults) as proxy, \
            AsyncSignoff(proxy.url, live.agent_token, retries=FAST) as gate:
        handle = await gate.request("send_email", {"to": "a@b.com"})
    keys = {b["idempotency_key"] for b in proxy.bodies("POST", "/v1/requests")}
    assert len(proxy.bodies("POST", "/v1/requests")) == 3 and len(keys) == 1
    assert [r["id"] for r in await all_requests(live)] == [handle.id]


async def test_errors_unreachable_and_unauthenticated(live_sqlite: Live) -> None:
    async with AsyncSignoff(f"http://127.0.0.1:{free_port()}", "tok", retries=FAST) as gate:
        with pytest.raises(SignoffUnavailable) as caught:
            await gate.list()
    assert caught.value.attempts == 4
    async with AsyncSignoff(live_sqlite.url, "wrong") as gate:
        with pytest.raises(AuthenticationError, match="refused the token passed as token="):
            await gate.request("send_email", {"to": "a@b.com"})


async def test_cancelling_the_waiting_task_withdraws_the_request(live_sqlite: Live) -> None:
    live = live_sqlite
    async with AsyncSignoff(live.url, live.agent_token, retries=FAST) as gate:

        @gate.requires_approval()
        async def send_email(to: str) -> None:
            raise AssertionError("must not run")

        task = asyncio.create_task(send_email("a@b.com"))
        (req,) = await pending(live)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    stored = await fetch(live, req["id"])
    assert stored["status"] == "cancelled"
    assert stored["decision"]["feedback"] == "the agent stopped waiting for the decision"
