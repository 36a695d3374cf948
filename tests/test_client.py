"""The blocking client against a live server: the decorator, handles, batches, retries and errors.

The client blocks, so it runs in a worker thread while the test decides through the API as a reviewer.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web

from signoff import (
    ActionRejected,
    ApprovalBypassed,
    ApprovalCancelled,
    ApprovalExpired,
    AsyncSignoff,
    AuthenticationError,
    ConflictError,
    InvalidRequest,
    Retry,
    Signoff,
    SignoffUnavailable,
    WaitTimedOut,
)
from signoff._gate import Gate, GateOptions
from signoff._http import retry_after
from signoff.decision import Decision
from tests.conftest import Live, start_live

FAST = Retry(attempts=3, backoff=0.01, max_backoff=0.05)
REVIEWER = {"id": "U0DANA", "name": "Dana"}


# --- helpers shared with test_client_async.py ---------------------------------------------------------


async def pending(live: Live, count: int = 1, within: float = 5.0) -> list[dict[str, Any]]:
    """Wait until ``count`` requests are pending (the client submits from another thread or task)."""
    end = time.monotonic() + within
    while True:
        status, out = await live.call("GET", "/v1/requests?status=pending", token=live.admin_token)
        assert status == 200, out
        if len(out["requests"]) >= count:
            return list(reversed(out["requests"]))  # oldest first
        assert time.monotonic() < end, f"expected {count} pending request(s), saw {len(out['requests'])}"
        await asyncio.sleep(0.02)


async def decide(live: Live, request_id: str, decision: str, **body: Any) -> dict[str, Any]:
    status, out = await live.call("POST", f"/v1/requests/{request_id}/decision", token=live.reviewer_token,
                                  json={"decision": decision, "reviewer": REVIEWER, **body})
    assert status == 200, out
    return dict(out)


async def fetch(live: Live, request_id: str) -> dict[str, Any]:
    status, out = await live.call("GET", f"/v1/requests/{request_id}", token=live.admin_token)
    assert status == 200, out
    return dict(out)


async def all_requests(live: Live) -> list[dict[str, Any]]:
    status, out = await live.call("GET", "/v1/requests", token=live.admin_token)
    assert status == 200, out
    return list(out["requests"])


@dataclass
class Fault:
    """Misbehave once on the first request matching ``method`` and a path ending in ``suffix``:
    ``drop`` forwards it and then cuts the connection (the answer is lost), ``503``/``500`` answer that
    status, ``429`` answers it with ``Retry-After``."""

    method: str
    suffix: str
    kind: str
    retry_after: str = "1"


@dataclass
class Seen:
    method: str
    path: str
    body: bytes
    at: float


@dataclass
class FaultyProxy:
    """A loopback HTTP proxy in front of the live server that injects ``faults`` and records traffic."""

    upstream: Live
    faults: list[Fault]
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def bodies(self, method: str, suffix: str) -> list[dict[str, Any]]:
        return [json.loads(s.body) for s in self.seen if s.method == method and s.path.endswith(suffix)]

    def times(self, method: str, suffix: str) -> list[float]:
        return [s.at for s in self.seen if s.method == method and s.path.endswith(suffix)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(Seen(request.method, request.path, body, time.monotonic()))
        fault = next((f for f in self.faults if f.method == request.method and request.path.endswith(f.suffix)),
                     None)
        if fault is not None:
            self.faults.remove(fault)
            if fault.kind in ("503", "500"):
                return web.json_response({"error": {"code": "unavailable", "message": "proxy says no"}},
                                         status=int(fault.kind))
            if fault.kind == "429":
                return web.json_response({"error": {"code": "rate_limited", "message": "slow down"}},
                                         status=429, headers={"Retry-After": fault.retry_after})
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        async with self.upstream.http.request(request.method, self.upstream.url + request.path_qs,
                                              data=body or None, headers=headers) as up:
            payload = await up.read()
            status, ctype = up.status, up.content_type
        if fault is not None and fault.kind == "drop":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=204)
        return web.Response(body=payload, status=status, content_type=ctype)


@asynccontextmanager
async def faulty_proxy(live: Live, *faults: Fault) -> AsyncIterator[FaultyProxy]:
    proxy = FaultyProxy(live, list(faults))
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    proxy.url = f"http://127.0.0.1:{port}"
    try:
        yield proxy
    finally:
        await runner.cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the decorator ------------------------------------------------------------------------------------


async def test_approved_call_runs_with_the_original_args_and_reports_the_result(live: Live) -> None:
    calls: list[tuple[str, str, str]] = []
    with Signoff(live.url, live.agent_token, retries=FAST) as gate:

        @gate.requires_approval(risk="high", labels=["needs-human-review"],
                                context=lambda a: {"summary": f"Refund mail to {a['to']}"})
        def send_email(to: str, subject: str, body: str = "(empty)") -> str:
            calls.append((to, subject, body))
            return "sent"

        task = asyncio.create_task(asyncio.to_thread(send_email, "a@b.com", subject="Refund"))
        (req,) = await pending(live)
        assert req["action"] == {"tool": "send_email",
                                 "args": {"to": "a@b.com", "subject": "Refund", "body": "(empty)"}}
        assert req["risk"] == "high" and req["labels"] == ["needs-human-review"]
        assert req["context"]["summary"] == "Refund mail to a@b.com"
        assert not task.done()  # blocked on the human
        await decide(live, req["id"], "approve")
        assert await task == "sent"
    assert calls == [("a@b.com", "Refund", "(empty)")]
    stored = await fetch(live, req["id"])
    assert stored["result"]["ok"] is True
    assert "'sent'" in stored["result"]["detail"]


async def test_edited_call_runs_with_the_reviewers_args(live: Live) -> None:
    calls: list[dict[str, Any]] = []
    when = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    with Signoff(live.url, live.agent_token, retries=FAST) as gate:

        @gate.requires_approval(tool="email.send")
        def send_email(to: str, subject: str, *, at: datetime, **headers: str) -> str:
            calls.append({"to": to, "subject": subject, "at": at, "headers": headers})
            return "sent"

        task = asyncio.create_task(asyncio.to_thread(send_email, "a@b.com", "Refnud", at=when, cc="c@b.com"))
        (req,) = await pending(live)
        assert req["action"]["tool"] == "email.send"
        assert req["action"]["args"] == {"to": "a@b.com", "subject": "Refnud", "at": when.isoformat(),
                                         "cc": "c@b.com"}
        edited = {**req["action"]["args"], "subject": "Refund", "cc": "boss@b.com"}
        out = await decide(live, req["id"], "edit", args=edited)
        assert out["status"] == "modified"
        assert await task == "sent"
    # Edited values arrive as edited; the untouched datetime is still the caller's datetime object.
    assert calls == [{"to": "a@b.com", "subject": "Refund", "at": when, "headers": {"cc": "boss@b.com"}}]


async def test_rejection_raises_a_message_the_agent_can_act_on(live: Live) -> None:
    calls: list[str] = []
    with Signoff(live.url, live.agent_token, retries=FAST) as gate:

        @gate.requires_approval(risk="critical")
        def run_sql(query: str) -> None:
            calls.append(query)

        task = asyncio.create_task(asyncio.to_thread(run_sql, "UPDATE accounts SET x = 1"))
        (req,) = await pending(live)
        out = await decide(live, req["id"], "reject", feedback="use a READ ONLY transaction")
        with pytest.raises(ActionRejected) as caught:
            await task
    assert calls == []
    at = datetime.fromisoformat(out["decision"]["at"]).strftime("%H:%M")
    message = str(caught.value)
    assert message.startswith(f"Rejected by Dana at {at} UTC: use a READ ONLY transaction\n")
    assert "Do not retry the same action unchanged" in message
    assert caught.value.feedback == "use a READ ONLY transaction"
    assert caught.value.decision.by is not None and caught.value.decision.by.name == "Dana"
    assert caught.value.request_id == req["id"]


async def test_expiry_raises_approval_expired(live: Live) -> None:
    calls: list[str] = []
    with Signoff(live.url, live.agent_token, retries=FAST) as gate:

        @gate.requires_approval(timeout_s=1)
        def deploy(service: str) -> None:
            calls.append(service)

        with pytest.raises(ApprovalExpired) as caught:
            await asyncio.wait_for(asyncio.to_thread(deploy, "api"), timeout=10)
    assert calls == []
    assert "nobody approved or rejected the deploy action before its deadline" in str(caught.value)
    assert caught.value.decision.status == "expired"


async def test_cancel_raises_approval_cancelled_in_the_waiting_call(live: Live) -> None:
    calls: list[str] = []
    with Signoff(live.url, live.agent_token, retries=FAST) as gate:

        @gate.requires_approval()
        def delete_files(path: str) -> None:
            calls.append(path)

        task = asyncio.create_task(asyncio.to_thread(delete_files, "/srv/old"))
        (req,) = await pending(live)
        handle = await asyncio.to_thread(gate.cancel, req["id"], "the user changed their mind")
        assert handle.status == "cancelled"
        with pytest.raises(ApprovalCancelled) as caught:
            await task
        # Cancelling again (say, a retried call whose first attempt landed) is not an error.
        again = await asyncio.to_thread(gate.cancel, req["id"])
        assert again.status == "cancelled"
    assert calls == []
    assert "the user changed their mind" in str(caught.value)
    assert "was not run" in str(caught.value)


async def test_function_error_is_reported_and_reraised(live_sqlite: Live) -> None:
    live = live_sqlite
    with Signoff(live.url, live.agent_token, retries=FAST) as gate:

        @gate.requires_approval()
        def send_email(to: str) -> None:
            raise ValueError(f"mailbox of {to} is full")

        task = asyncio.create_task(asyncio.to_thread(send_email, "a@b.com"))
        (req,) = await pending(live)
        await decide(live, req["id"], "approve")
        with pytest.raises(ValueError, match=r"mailbox of a@b\.com is full"):
            await task
    result = (await fetch(live, req["id"]))["result"]
    assert result["ok"] is False
    assert result["detail"] == "ValueError: mailbox of a@b.com is full"


async def test_a_failed_result_report_never_masks_the_return_value(live_sqlite: Live,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    live = live_sqlite
    async with faulty_proxy(live, Fault("POST", "/result", "500")) as proxy:
        with Signoff(proxy.url, live.agent_token, retries=FAST) as gate:

            @gate.requires_approval()
            def post_update(text: str) -> str:
                return f"posted {text}"

            task = asyncio.create_task(asyncio.to_thread(post_update, "hello"))
            (req,) = await pending(live)
            await decide(live, req["id"], "approve")
            assert await task == "posted hello"
    assert len(proxy.bodies("POST", "/result")) == 1  # tried once, failed, moved on
    assert (await fetch(live, req["id"]))["result"] is None
    assert "could not report the result" in caplog.text


async def test_signoff_mode_off_calls_straight_through_with_one_warning(
        live_sqlite: Live, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    live = live_sqlite
    monkeypatch.setenv("SIGNOFF_MODE", "off")
    with Signoff(live.url, live.agent_token, retries=FAST) as gate:

        @gate.requires_approval(risk="critical")
        def drop_table(name: str) -> str:
            return f"dropped {name}"

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            first = await asyncio.to_thread(drop_table, "users")
            second = await asyncio.to_thread(drop_table, "orders")
    assert (first, second) == ("dropped users", "dropped orders")
    bypassed = [w for w in caught if issubclass(w.category, ApprovalBypassed)]
    assert len(bypassed) == 1
    assert "drop_table runs without human approval" in str(bypassed[0].message)
    assert "SIGNOFF_MODE=off" in caplog.text
    assert await all_requests(live) == []


async def test_a_request_the_server_decides_at_once_needs_no_wait(sqlite_url: str) -> None:
    live = await start_live(sqlite_url, mode="off")  # server-side mode off: auto-approved, recorded
    try:
        with Signoff(live.url, live.agent_token, retries=FAST) as gate:

            @gate.requires_approval()
            def issue_refund(amount: int) -> int:
                return amount

            assert await asyncio.wait_for(asyncio.to_thread(issue_refund, 30), timeout=5) == 30
        (req,) = await all_requests(live)
        assert req["status"] == "approved" and req["decision"]["by"]["via"] == "policy"
        assert req["result"]["ok"] is True
    finally:
        await live.http.close()
        await live.app.stop()


# --- handles and batches ------------------------------------------------------------------------------


async def test_handle_wait_returns_the_decision_and_times_out_while_pending(live_sqlite: Live) -> None:
    live = live_sqlite
    with Signoff(live.url, live.agent_token, retries=FAST) as gate:
        handle = await asyncio.to_thread(gate.request, "issue_refund", {"amount": 30},
                                         context="customer asked twice", labels=["escalation"])
        assert handle.status == "pending" and handle.id.startswith("req_")
        with pytest.raises(WaitTimedOut):
            await asyncio.to_thread(handle.wait, 0.2)
        waiting = asyncio.create_task(asyncio.to_thread(handle.wait))
        await decide(live, handle.id, "edit", args={"amount": 25})
        decision = await waiting
        page = await asyncio.to_thread(gate.list, label="escalation")
    assert isinstance(decision, Decision)
    assert decision.status == "modified" and decision.final_args == {"amount": 25}
    assert decision.by is not None and decision.by.via == "api"
    assert handle.data["context"] == {"summary": "customer asked twice"}
    assert [h.id for h in page.requests] == [handle.id] and page.next_cursor is None


async def test_batch_returns_every_decision_in_order(live: Live) -> None:
    with Signoff(live.url, live.agent_token, retries=FAST) as gate:
        batch = gate.batch()
        with batch:
            first = await asyncio.to_thread(batch.request, "send_email", {"to": "a@b.com"})
            second = await asyncio.to_thread(batch.request, "send_email", {"to": "evil@c.com"})
            waiting = asyncio.create_task(asyncio.to_thread(batch.wait_all, 10))
            await decide(live, second.id, "reject", feedback="not on the allowlist")
            await decide(live, first.id, "approve")
            decisions = await waiting
    assert [d.request_id for d in decisions] == [first.id, second.id]
    assert [d.status for d in decisions] == ["approved", "rejected"]
    assert decisions[0].check() is decisions[0]
    with pytest.raises(ActionRejected, match="not on the allowlist"):
        decisions[1].check()


async def test_leaving_a_batch_with_an_error_cancels_what_is_pending(live_sqlite: Live) -> None:
    live = live_sqlite

    def run(gate: Signoff) -> str:
        with gate.batch() as batch:
            handle = batch.request("deploy", {"service": "api"})
            raise RuntimeError(f"agent crashed after {handle.id}")

    with Signoff(live.url, live.agent_token, retries=FAST) as gate, pytest.raises(RuntimeError) as caught:
        await asyncio.to_thread(run, gate)
    rid = str(caught.value).rsplit(" ", 1)[1]
    assert (await fetch(live, rid))["status"] == "cancelled"


# --- transport: retries, idempotency, errors ----------------------------------------------------------


async def test_a_lost_submit_answer_is_retried_with_the_same_key_and_creates_one_request(
        live_sqlite: Live) -> None:
    live = live_sqlite
    async with faulty_proxy(live, Fault("POST", "/v1/requests", "drop")) as proxy:
        with Signoff(proxy.url, live.agent_token, retries=FAST) as gate:
            handle = await asyncio.to_thread(gate.request, "send_email", {"to": "a@b.com"})
    posts = proxy.bodies("POST", "/v1/requests")
    assert len(posts) == 2  # the first reached the server; its answer was lost
    assert posts[0]["idempotency_key"] == posts[1]["idempotency_key"]
    assert [r["id"] for r in await all_requests(live)] == [handle.id]


async def test_a_retried_result_report_whose_first_attempt_landed_succeeds(live_sqlite: Live) -> None:
    live = live_sqlite
    req = await live.submit()
    await decide(live, req["id"], "approve")
    async with faulty_proxy(live, Fault("POST", "/result", "drop")) as proxy:
        with Signoff(proxy.url, live.agent_token, retries=FAST) as gate:
            handle = await asyncio.to_thread(gate.report_result, req["id"], True, "sent")
    assert len(proxy.bodies("POST", "/result")) == 2  # the retry met 409 "already reported": ours
    assert handle.data["result"]["ok"] is True and handle.data["result"]["detail"] == "sent"
    with Signoff(live.url, live.agent_token, retries=FAST) as gate, pytest.raises(ConflictError):
        await asyncio.to_thread(gate.report_result, req["id"], False, "a different outcome")


async def test_503_and_429_are_retried_and_retry_after_is_honoured(live_sqlite: Live) -> None:
    live = live_sqlite
    faults = [Fault("POST", "/v1/requests", "503"), Fault("POST", "/v1/requests", "429", retry_after="1")]
    async with faulty_proxy(live, *faults) as proxy:
        with Signoff(proxy.url, live.agent_token, retries=FAST) as gate:
            handle = await asyncio.to_thread(gate.request, "send_email", {"to": "a@b.com"},
                                             idempotency_key="mail-42")
    assert [b["idempotency_key"] for b in proxy.bodies("POST", "/v1/requests")] == ["mail-42"] * 3
    sent = proxy.times("POST", "/v1/requests")
    assert sent[2] - sent[1] >= 0.9  # waited for Retry-After: 1, not the 10 ms backoff
    assert [r["id"] for r in await all_requests(live)] == [handle.id]


async def test_an_unreachable_server_raises_signoff_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Signoff(url, "tok", retries=Retry(attempts=2, backoff=0.01)) as gate, \
            pytest.raises(SignoffUnavailable) as caught:
        await asyncio.to_thread(gate.get, "req_01jd0000000000000000000000")
    assert caught.value.attempts == 3
    assert f"could not reach signoff at {url}" in str(caught.value)


async def test_a_refused_token_names_signoff_token(live_sqlite: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    live = live_sqlite
    monkeypatch.setenv("SIGNOFF_TOKEN", "not-a-real-token")
    with Signoff(live.url) as gate, pytest.raises(AuthenticationError) as caught:
        await asyncio.to_thread(gate.request, "send_email", {"to": "a@b.com"})
    assert caught.value.status == 401
    assert "refused SIGNOFF_TOKEN" in str(caught.value)
    assert "signoff tokens create" in str(caught.value)

    monkeypatch.delenv("SIGNOFF_TOKEN")
    with Signoff(live.url) as gate, pytest.raises(AuthenticationError, match="SIGNOFF_TOKEN is not set"):
        await asyncio.to_thread(gate.list)


async def test_url_and_token_come_from_the_environment(live_sqlite: Live,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    live = live_sqlite
    monkeypatch.setenv("SIGNOFF_URL", live.url + "/")
    monkeypatch.setenv("SIGNOFF_TOKEN", live.agent_token)
    with Signoff(retries=FAST) as gate:
        handle = await asyncio.to_thread(gate.request, "send_email", {"to": "a@b.com"})
    assert handle.data["agent"] == "agent-1"
    monkeypatch.delenv("SIGNOFF_URL")
    assert Signoff().url == "http://127.0.0.1:3000"


async def test_a_bad_request_names_the_field(live_sqlite: Live) -> None:
    live = live_sqlite
    with Signoff(live.url, live.agent_token, retries=FAST) as gate, pytest.raises(InvalidRequest) as caught:
        await asyncio.to_thread(gate.request, "send email!", {"to": "a@b.com"})
    assert caught.value.status == 422 and caught.value.code == "validation_failed"
    assert "action.tool" in str(caught.value)


# --- pure pieces --------------------------------------------------------------------------------------


def test_an_edit_maps_back_onto_the_signature() -> None:
    def f(a: int, /, b: int, *rest: int, c: int = 3, **more: int) -> None: ...

    call = Gate(f, GateOptions()).bind((1, 2, 9, 9), {"c": 4, "d": 5})
    assert call.submitted == {"a": 1, "b": 2, "rest": [9, 9], "c": 4, "d": 5}
    args, kwargs = call.edited_call({"a": 1, "b": 20, "rest": [7], "d": 6, "e": 1})
    assert args == (1, 20, 7) and kwargs == {"d": 6, "e": 1}  # c was removed: the function's default applies

    def g(x: int) -> None: ...

    with pytest.raises(TypeError, match="does not take: y"):
        Gate(g, GateOptions()).bind((1,), {}).edited_call({"x": 1, "y": 2})


def test_a_methods_self_is_kept_but_not_submitted() -> None:
    class Mailer:
        def send(self, to: str) -> None: ...

    m = Mailer()
    call = Gate(Mailer.send, GateOptions()).bind((m, "a@b.com"), {})
    assert call.submitted == {"to": "a@b.com"}
    assert call.edited_call({"to": "x@b.com"}) == ((m, "x@b.com"), {})


def test_a_policy_denial_names_the_rule() -> None:
    data = {"id": "req_1", "status": "rejected", "action": {"tool": "run_sql", "args": {}},
            "decision": {"kind": "reject", "by": {"id": "policy", "name": "signoff", "via": "policy"},
                         "at": "2026-01-05T12:03:00.000Z", "feedback": "DROP TABLE is never allowed",
                         "rule": "no-drop"}}
    with pytest.raises(ActionRejected) as caught:
        Decision.from_request(data).check()
    assert str(caught.value).startswith("Rejected by policy 'no-drop' at 12:03 UTC: DROP TABLE is never allowed")


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    retry = Retry(backoff=1.0, max_backoff=4.0)
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (5, 4.0)]:
        delays = {retry.delay(attempt) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered
    with pytest.raises(ValueError):
        Retry(attempts=-1)


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    import email.utils

    import httpx

    def resp(value: str) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": value})

    assert retry_after(resp("3")) == 3.0
    later = email.utils.format_datetime(datetime.now(UTC).replace(microsecond=0).astimezone(UTC), usegmt=True)
    assert retry_after(resp(later)) == pytest.approx(0.0, abs=1.5)
    assert retry_after(resp("soon")) is None


def test_decorators_refuse_the_wrong_kind_of_function(monkeypatch: pytest.MonkeyPatch) -> None:
    async def async_fn() -> None: ...

    def sync_fn() -> None: ...

    with pytest.raises(TypeError, match="AsyncSignoff"):
        Signoff("http://127.0.0.1:1").requires_approval()(async_fn)
    with pytest.raises(TypeError, match="not async"):
        AsyncSignoff("http://127.0.0.1:1").requires_approval()(sync_fn)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="risk"):
        Signoff("http://127.0.0.1:1").requires_approval(risk="huge")
    monkeypatch.setenv("SIGNOFF_MODE", "maybe")
    with pytest.raises(ValueError, match="SIGNOFF_MODE"):
        Signoff("http://127.0.0.1:1")
