"""The agent HTTP API end to end on a live server, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import pytest

from bot.app import SignoffApp, Tuning
from bot.clock import FakeClock
from storage import repository as repo
from tests.conftest import Live, make_settings, start_live
from tests.support.pgtemplate import migrated_database

EMAIL = {"tool": "send_email", "args": {"to": "a@example.com", "subject": "Refund", "body": "Hello"}}


@pytest.fixture
def pg_url(pg_server_url: str) -> str:
    """Overrides conftest's: a database already at the newest schema (a copy is faster than migrating)."""
    return migrated_database(pg_server_url)


def body(**fields: Any) -> dict[str, Any]:
    return {"action": fields.pop("action", EMAIL), **fields}


def assert_error(out: Any, code: str, *, field: str | None = None) -> None:
    """The error shape of §4.1; ``field`` must be named in the message and in the details."""
    assert isinstance(out, dict) and set(out) == {"error"}, out
    err = out["error"]
    assert err["code"] == code, out
    assert isinstance(err["message"], str) and err["message"], out
    assert isinstance(err["details"], list), out
    if field is not None:
        assert field in err["message"], out
        assert field in [d.get("field") for d in err["details"]], out


async def decide(live: Live, rid: str, decision: str, *, name: str = "Dana", rid_user: str | None = None,
                 token: str | None = None, **extra: Any) -> tuple[int, Any]:
    reviewer = {"id": rid_user or f"U{name.upper()}", "name": name}
    return await live.call("POST", f"/v1/requests/{rid}/decision", token=token or live.reviewer_token,
                           json={"decision": decision, "reviewer": reviewer, **extra})


async def audit_kinds(live: Live, rid: str) -> list[str]:
    async with live.app.db.read() as s:
        return [e.kind for e in await repo.audit_for(s, request_id=rid)]


# --- authentication and authorisation -------------------------------------------------------------------


async def test_missing_malformed_and_unknown_tokens_get_401(live: Live) -> None:
    async with live.http.post(live.url + "/v1/requests", json=body()) as r:
        assert r.status == 401
        assert r.headers["WWW-Authenticate"] == "Bearer"
        assert_error(await r.json(), "unauthenticated")
    async with live.http.get(live.url + "/v1/requests", headers={"Authorization": "Basic abc"}) as r:
        assert r.status == 401
        assert_error(await r.json(), "unauthenticated")
    status, out = await live.call("GET", "/v1/requests", token="so_a_not-a-real-token")
    assert status == 401
    assert_error(out, "unauthenticated")


async def test_revoked_token_gets_401(live: Live) -> None:
    token = await live.app.tokens.create(name="short-lived", role="agent")
    status, _ = await live.call("GET", "/v1/requests", token=token)
    assert status == 200
    await live.app.tokens.revoke(name="short-lived")
    status, out = await live.call("GET", "/v1/requests", token=token)
    assert status == 401
    assert_error(out, "unauthenticated")


async def test_agent_token_cannot_decide(live: Live) -> None:
    req = await live.submit(body())
    status, out = await decide(live, req["id"], "approve", token=live.agent_token)
    assert status == 403
    assert_error(out, "forbidden")
    status, out = await live.call("GET", f"/v1/requests/{req['id']}")
    assert out["status"] == "pending"


async def test_agent_sees_only_its_own_requests(live: Live) -> None:
    other = await live.app.tokens.create(name="agent-2", role="agent")
    mine = await live.submit(body())
    status, theirs = await live.call("POST", "/v1/requests", token=other, json=body())
    assert status == 201
    assert theirs["agent"] == "agent-2"

    status, out = await live.call("GET", f"/v1/requests/{mine['id']}", token=other)
    assert status == 404
    assert_error(out, "not_found")
    for path in (f"/v1/requests/{mine['id']}/wait?timeout_s=0", ):
        status, out = await live.call("GET", path, token=other)
        assert status == 404
    status, out = await live.call("POST", f"/v1/requests/{mine['id']}/labels", token=other,
                                  json={"add": ["x"]})
    assert status == 404

    status, page = await live.call("GET", "/v1/requests", token=other)
    assert [r["id"] for r in page["requests"]] == [theirs["id"]]
    # Asking for another agent's requests by filter does not widen the scope.
    status, page = await live.call("GET", "/v1/requests?agent=agent-1", token=other)
    assert status == 200
    assert page["requests"] == []

    status, page = await live.call("GET", "/v1/requests", token=live.reviewer_token)
    assert {r["id"] for r in page["requests"]} == {mine["id"], theirs["id"]}


# --- validation ------------------------------------------------------------------------------------------


async def test_unknown_field_is_refused_by_name(live: Live) -> None:
    status, out = await live.call("POST", "/v1/requests", json=body(timout_s=30))
    assert status == 422
    assert_error(out, "validation_failed", field="timout_s")
    status, out = await live.call("POST", "/v1/requests", json=body(context={"sumary": "typo"}))
    assert status == 422
    assert_error(out, "validation_failed", field="context.sumary")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (body(action={"tool": "send email!", "args": {}}), "action.tool"),
        (body(action={"tool": "x" * 65, "args": {}}), "action.tool"),
        (body(action={"args": {}}), "action.tool"),
        (body(action={"tool": "t", "args": [1, 2]}), "action.args"),
        (body(risk="extreme"), "risk"),
        (body(timeout_s=0), "timeout_s"),
        (body(required_approvals=0), "required_approvals"),
        (body(labels=["has space"]), "labels.0"),
        (body(reviewers=["not-a-user"]), "reviewers.0"),
        (body(callback_url="ftp://x"), "callback_url"),
        ({"context": {}}, "action"),
    ],
)
async def test_bad_field_is_named(live_sqlite: Live, payload: dict[str, Any], field: str) -> None:
    status, out = await live_sqlite.call("POST", "/v1/requests", json=payload)
    assert status == 422, out
    assert_error(out, "validation_failed", field=field)


async def test_args_over_256_kib_are_refused(live: Live) -> None:
    big = {f"k{i}": "x" * 1000 for i in range(300)}  # ~300 KB as JSON, well under the 1 MiB body limit
    status, out = await live.call("POST", "/v1/requests", json=body(action={"tool": "t", "args": big}))
    assert status == 422
    assert_error(out, "validation_failed", field="action.args")
    assert "256 KiB" in out["error"]["message"]
    just_fits = {f"k{i}": "x" * 1000 for i in range(250)}
    status, out = await live.call("POST", "/v1/requests", json=body(action={"tool": "t", "args": just_fits}))
    assert status == 201, out
    assert out["action"]["args"] == just_fits


async def test_body_over_1_mib_gets_413(live: Live) -> None:
    payload = json.dumps(body(context={"summary": "s"}, padding="x" * (1024 * 1024 + 10))).encode()
    headers = {**live.auth(), "Content-Type": "application/json"}
    async with live.http.post(live.url + "/v1/requests", data=payload, headers=headers) as r:
        assert r.status == 413
        assert_error(await r.json(), "payload_too_large")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit applies while reading
        for i in range(0, len(payload), 64 * 1024):
            yield payload[i : i + 64 * 1024]

    async with live.http.post(live.url + "/v1/requests", data=chunks(), headers=headers) as r:
        assert r.status == 413
        assert_error(await r.json(), "payload_too_large")


async def test_non_json_content_type_gets_415(live: Live) -> None:
    for ctype in ("text/plain", "application/x-www-form-urlencoded"):
        async with live.http.post(live.url + "/v1/requests", data=json.dumps(body()),
                                  headers={**live.auth(), "Content-Type": ctype}) as r:
            assert r.status == 415
            out = await r.json()
            assert_error(out, "unsupported_media_type")
            assert "application/json" in out["error"]["message"]


async def test_invalid_json_gets_400(live: Live) -> None:
    for raw in (b"{", b'{"action": }', b"\xff\xfe", b"", b"[" * 100_000, b'{"a":' * 50_000):
        async with live.http.post(live.url + "/v1/requests", data=raw,
                                  headers={**live.auth(), "Content-Type": "application/json"}) as r:
            assert r.status == 400, (raw[:20], await r.text())
            assert_error(await r.json(), "bad_request")


async def test_inputs_postgres_cannot_store_are_refused_not_500(live: Live) -> None:
    """Each of these once answered 500 on PostgreSQL; both stores refuse them the same way."""
    headers = {**live.auth(), "Content-Type": "application/json"}
    for raw, status, field in (
        ('{"action": {"tool": "t", "args": {"a": NaN}}}', 400, None),
        ('{"action": {"tool": "t", "args": {"a": -Infinity}}}', 400, None),
        ('{"action": {"tool": "t", "args": {"a": "x\\u0000y"}}}', 422, "action.args.a"),
        ('{"action": {"tool": "t", "args": {"k\\u0000": 1}}}', 422, None),
        ('{"action": {"tool": "t"}, "context": {"summary": "\\u0000"}}', 422, "context.summary"),
        ('{"action": {"tool": "t"}, "idempotency_key": "a\\u0000"}', 422, "idempotency_key"),
        ('{"action": {"tool": "t", "args": ' + '{"a": ' * 70 + "1" + "}" * 70 + "}}", 422, "action.args"),
        ('{"action": {"tool": "t"}, "callback_url": "https://' + "a" * 2100 + '.example.com/"}', 422,
         "callback_url"),
    ):
        async with live.http.post(live.url + "/v1/requests", data=raw, headers=headers) as r:
            out = await r.json()
            assert r.status == status, (raw[:80], out)
            assert_error(out, "bad_request" if status == 400 else "validation_failed", field=field)
    req = await live.submit(body())
    status, out = await decide(live, req["id"], "reject", name="Dana\u0000", feedback="no")
    assert status == 422, out
    status, out = await live.call("GET", "/v1/requests?tool=%00", token=live.reviewer_token)
    assert status == 422
    assert_error(out, "validation_failed", field="tool")
    status, out = await live.call("GET", f"/v1/requests/{req['id']}")
    assert out["status"] == "pending"  # nothing was applied


async def test_body_must_be_an_object(live: Live) -> None:
    for raw in ("[1, 2]", '"text"', "42", "null"):
        async with live.http.post(live.url + "/v1/requests", data=raw,
                                  headers={**live.auth(), "Content-Type": "application/json"}) as r:
            assert r.status == 422
            out = await r.json()
            assert_error(out, "validation_failed")
            assert out["error"]["details"] == [{"field": "(body)"}]
            assert "JSON object" in out["error"]["message"]


async def test_unknown_route_method_and_id_shape(live_sqlite: Live) -> None:
    live = live_sqlite
    status, out = await live.call("GET", "/v1/nothing-here")
    assert status == 404
    assert_error(out, "not_found")
    status, out = await live.call("DELETE", "/v1/requests")
    assert status == 405
    assert_error(out, "method_not_allowed")
    status, out = await live.call("GET", "/v1/requests/req_../../etc")
    assert status == 404
    status, out = await live.call("GET", "/v1/requests?limit=0")
    assert status == 422
    assert_error(out, "validation_failed", field="limit")
    status, out = await live.call("GET", "/v1/requests?stauts=pending")
    assert status == 422
    assert_error(out, "validation_failed", field="stauts")
    status, out = await live.call("GET", "/v1/requests?cursor=nope")
    assert status == 422
    assert_error(out, "validation_failed", field="cursor")


# --- submit and idempotency ---------------------------------------------------------------------------


async def test_submitted_request_has_the_documented_shape(live: Live) -> None:
    req = await live.submit(body(context={"summary": "refund Bob", "user_request": "please refund"},
                                 risk="high", labels=["needs-human-review", "escalation"],
                                 reviewers=["U123", "S0REV"], channel="C0APPROVALS", timeout_s=120))
    assert re.fullmatch(r"req_[0-9a-z]{26}", req["id"])
    assert req["status"] == "pending"
    assert req["action"] == EMAIL
    assert req["final_args"] is None
    assert req["context"] == {"summary": "refund Bob", "user_request": "please refund"}
    assert req["risk"] == "high"
    assert req["labels"] == ["escalation", "needs-human-review"]
    assert req["agent"] == "agent-1"
    assert req["channel"] == "C0APPROVALS"
    assert req["reviewers"] == ["U123", "S0REV"]
    assert req["required_approvals"] == 1
    assert req["approvals"] == [] and req["decision"] is None and req["decided_at"] is None
    assert req["version"] == 1
    assert "callback_url" not in req
    created = datetime.fromisoformat(req["created_at"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(req["expires_at"].replace("Z", "+00:00"))
    assert req["created_at"].endswith("Z") and req["expires_at"].endswith("Z")
    assert (expires - created).total_seconds() == 120
    status, again = await live.call("GET", f"/v1/requests/{req['id']}")
    assert status == 200
    assert again == req


async def test_idempotency_key_replays_or_conflicts(live: Live) -> None:
    first = await live.submit(body(idempotency_key="k-1"))
    status, again = await live.call("POST", "/v1/requests", json=body(idempotency_key="k-1"))
    assert status == 200
    assert again["id"] == first["id"]
    assert again["action"] == first["action"]
    status, out = await live.call("POST", "/v1/requests",
                                  json=body(idempotency_key="k-1", risk="critical"))
    assert status == 409
    assert_error(out, "idempotency_conflict")
    assert "k-1" in out["error"]["message"]
    # Keys are per agent: another agent using the same key gets its own request.
    other = await live.app.tokens.create(name="agent-2", role="agent")
    status, theirs = await live.call("POST", "/v1/requests", token=other, json=body(idempotency_key="k-1"))
    assert status == 201
    assert theirs["id"] != first["id"]


async def test_a_key_stored_with_the_earlier_body_fingerprint_still_replays(live: Live) -> None:
    """Requests stored before the ``v2:`` fingerprint keep answering their retries (and their conflicts)."""
    from sqlalchemy import update

    from bot.schemas import SubmitBody
    from bot.service import _hash_body_v1
    from storage.models import Request

    payload = body(idempotency_key="k-old")
    first = await live.submit(payload)
    assert first is not None
    async with live.app.service.db.write() as s:  # as an earlier version of signoff stored it
        await s.execute(update(Request).where(Request.id == first["id"])
                        .values(body_hash=_hash_body_v1(SubmitBody.model_validate(payload))))
    status, again = await live.call("POST", "/v1/requests", json=payload)
    assert status == 200 and again["id"] == first["id"]
    status, out = await live.call("POST", "/v1/requests", json=body(idempotency_key="k-old", risk="critical"))
    assert status == 409
    assert_error(out, "idempotency_conflict")


async def test_concurrent_submits_with_one_key_create_exactly_one(live: Live) -> None:
    payload = body(action={"tool": "issue_refund", "args": {"amount": 10}}, idempotency_key="same")
    results = await asyncio.gather(*(live.call("POST", "/v1/requests", json=payload) for _ in range(30)))
    statuses = sorted(s for s, _ in results)
    assert statuses == [200] * 29 + [201]
    assert len({out["id"] for _, out in results}) == 1
    _, page = await live.call("GET", "/v1/requests?tool=issue_refund")
    assert len(page["requests"]) == 1


async def test_concurrent_submits_with_one_key_on_two_replicas(pg_url: str) -> None:
    a, b = await start_live(pg_url), None
    try:
        b = SignoffApp(make_settings(pg_url))
        await b.start()
        payload = body(idempotency_key="across")
        headers = a.auth()

        async def post(url: str) -> tuple[int, str]:
            async with a.http.post(url + "/v1/requests", json=payload, headers=headers) as r:
                return r.status, (await r.json())["id"]

        results = await asyncio.gather(*(post(app_url) for _ in range(10) for app_url in (a.url, b.url)))
        assert sorted(s for s, _ in results) == [200] * 19 + [201]
        assert len({rid for _, rid in results}) == 1
    finally:
        if b is not None:
            await b.stop()
        await a.http.close()
        await a.app.stop()


# --- listing ---------------------------------------------------------------------------------------------


async def test_list_filters(live: Live) -> None:
    email = await live.submit(body(risk="low", labels=["escalation"]))
    refund = await live.submit(body(action={"tool": "issue_refund", "args": {"amount": 5}}, risk="high"))
    sql = await live.submit(body(action={"tool": "run_sql", "args": {"q": "select 1"}}, risk="high",
                                 labels=["escalation", "db"]))
    other = await live.app.tokens.create(name="agent-2", role="agent")
    status, theirs = await live.call("POST", "/v1/requests", token=other, json=body(risk="critical"))
    assert status == 201
    status, _ = await decide(live, refund["id"], "approve")
    assert status == 200

    async def ids(query: str) -> set[str]:
        status, page = await live.call("GET", "/v1/requests?" + query, token=live.reviewer_token)
        assert status == 200, page
        return {r["id"] for r in page["requests"]}

    assert await ids("status=pending") == {email["id"], sql["id"], theirs["id"]}
    assert await ids("status=approved") == {refund["id"]}
    assert await ids("status=rejected") == set()
    assert await ids("label=escalation") == {email["id"], sql["id"]}
    assert await ids("label=db") == {sql["id"]}
    assert await ids("tool=run_sql") == {sql["id"]}
    assert await ids("agent=agent-2") == {theirs["id"]}
    assert await ids("agent=agent-1") == {email["id"], refund["id"], sql["id"]}
    assert await ids("risk=high") == {refund["id"], sql["id"]}
    assert await ids("risk=high&status=pending") == {sql["id"]}
    assert await ids("label=escalation&tool=send_email") == {email["id"]}
    status, out = await live.call("GET", "/v1/requests?status=maybe")
    assert status == 422
    assert_error(out, "validation_failed", field="status")
    status, out = await live.call("GET", "/v1/requests?risk=extreme")
    assert status == 422
    assert_error(out, "validation_failed", field="risk")


async def test_cursor_pagination_has_no_duplicates_or_gaps(live: Live) -> None:
    submitted = [(await live.submit(body(idempotency_key=f"p{i}")))["id"] for i in range(11)]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = "limit=3" + (f"&cursor={cursor}" if cursor else "")
        status, page = await live.call("GET", "/v1/requests?" + query)
        assert status == 200, page
        assert len(page["requests"]) <= 3
        seen += [r["id"] for r in page["requests"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 4
    assert len(seen) == len(set(seen)) == 11
    assert seen == sorted(submitted, reverse=True)  # newest first
    status, page = await live.call("GET", "/v1/requests?limit=11")
    assert page["next_cursor"] is None


# --- decisions -------------------------------------------------------------------------------------------


async def test_approve(live: Live) -> None:
    req = await live.submit(body())
    status, out = await decide(live, req["id"], "approve", name="Dana", rid_user="U1")
    assert status == 200, out
    assert out["status"] == "approved"
    assert out["final_args"] == EMAIL["args"]
    assert out["decision"]["kind"] == "approve"
    assert out["decision"]["by"] == {"id": "U1", "name": "Dana", "via": "api"}
    assert out["decided_at"] == out["decision"]["at"] and out["decided_at"].endswith("Z")
    assert out["approvals"][0]["reviewer"] == {"id": "U1", "name": "Dana"}
    status, again = await live.call("GET", f"/v1/requests/{req['id']}")
    assert again["status"] == "approved"
    assert "approved" in await audit_kinds(live, req["id"])


async def test_decision_without_reviewer_is_recorded_as_the_token(live: Live) -> None:
    req = await live.submit(body())
    status, out = await live.call("POST", f"/v1/requests/{req['id']}/decision", token=live.admin_token,
                                  json={"decision": "approve"})
    assert status == 200
    assert out["decision"]["by"] == {"id": "root", "name": "root", "via": "api"}


async def test_edit_makes_modified_with_final_args_and_version_2(live: Live) -> None:
    req = await live.submit(body())
    new_args = {**EMAIL["args"], "subject": "Your refund"}
    status, out = await decide(live, req["id"], "edit", args=new_args)
    assert status == 200, out
    assert out["status"] == "modified"
    assert out["final_args"] == new_args
    assert out["action"]["args"] == EMAIL["args"]
    assert out["version"] == 2
    assert out["decision"]["kind"] == "edit"
    status, out = await decide(live, req["id"], "edit", args={"to": "b@example.com"})
    assert status == 409  # already decided
    assert_error(out, "already_decided")
    req2 = await live.submit(body())
    status, out = await decide(live, req2["id"], "edit")
    assert status == 422
    assert_error(out, "validation_failed", field="args")


async def test_reject_needs_feedback(live: Live) -> None:
    req = await live.submit(body())
    for extra in ({}, {"feedback": "   "}):
        status, out = await decide(live, req["id"], "reject", **extra)
        assert status == 422
        assert_error(out, "validation_failed", field="feedback")
    status, out = await live.call("GET", f"/v1/requests/{req['id']}")
    assert out["status"] == "pending"
    status, out = await decide(live, req["id"], "reject", feedback="use a READ ONLY transaction")
    assert status == 200
    assert out["status"] == "rejected"
    assert out["decision"]["feedback"] == "use a READ ONLY transaction"
    assert out["final_args"] is None


async def test_bad_decision_body(live_sqlite: Live) -> None:
    req = await live_sqlite.submit(body())
    status, out = await decide(live_sqlite, req["id"], "maybe")
    assert status == 422
    assert_error(out, "validation_failed", field="decision")
    status, out = await decide(live_sqlite, "req_" + "0" * 26, "approve")
    assert status == 404
    assert_error(out, "not_found")


async def test_late_decision_names_the_winner_and_time(live: Live) -> None:
    req = await live.submit(body())
    status, won = await decide(live, req["id"], "approve", name="Dana")
    assert status == 200
    status, out = await decide(live, req["id"], "reject", name="Lee", feedback="no")
    assert status == 409
    assert_error(out, "already_decided")
    at = datetime.fromisoformat(won["decided_at"].replace("Z", "+00:00"))
    assert "Dana" in out["error"]["message"]
    assert at.strftime("%H:%M:%S") in out["error"]["message"]
    status, after = await live.call("GET", f"/v1/requests/{req['id']}")
    assert after["status"] == "approved" and after["decided_at"] == won["decided_at"]


# --- quorum ------------------------------------------------------------------------------------------------


async def test_quorum_needs_two_distinct_reviewers(live: Live) -> None:
    req = await live.submit(body(required_approvals=2))
    status, out = await decide(live, req["id"], "approve", name="Dana")
    assert status == 200
    assert out["status"] == "pending"
    assert len(out["approvals"]) == 1
    status, out = await decide(live, req["id"], "approve", name="Dana")
    assert status == 200
    assert out["status"] == "pending"
    assert len(out["approvals"]) == 1  # the same reviewer twice counts once
    status, out = await decide(live, req["id"], "approve", name="Lee")
    assert status == 200
    assert out["status"] == "approved"
    assert {a["reviewer"]["name"] for a in out["approvals"]} == {"Dana", "Lee"}
    assert out["decision"]["by"]["name"] == "Lee"
    assert await audit_kinds(live, req["id"]) == ["created", "approved-by", "approved-by", "approved"]


async def test_edit_under_quorum_bumps_version_and_counts_as_editors_approval(live: Live) -> None:
    req = await live.submit(body(required_approvals=2))
    status, out = await decide(live, req["id"], "approve", name="Dana", version=1)
    assert status == 200 and out["status"] == "pending"
    edited = {**EMAIL["args"], "body": "Hello again"}
    status, out = await decide(live, req["id"], "edit", name="Lee", args=edited, version=1)
    assert status == 200, out
    assert out["status"] == "pending"
    assert out["version"] == 2
    assert out["final_args"] == edited
    current = [a["reviewer"]["name"] for a in out["approvals"] if a["version"] == 2]
    assert current == ["Lee"]  # Dana's approval was of version 1 and no longer counts
    status, out = await decide(live, req["id"], "approve", name="Dana", version=1)
    assert status == 409
    assert_error(out, "version_changed")
    status, out = await decide(live, req["id"], "approve", name="Lee", version=2)
    assert status == 200 and out["status"] == "pending"  # the editor's approval is already counted
    status, out = await decide(live, req["id"], "approve", name="Dana", version=2)
    assert status == 200
    assert out["status"] == "modified"
    assert out["final_args"] == edited
    assert out["version"] == 2


async def test_quorum_edits_that_restore_the_args_end_approved_not_modified(live: Live) -> None:
    req = await live.submit(body(required_approvals=2))
    changed = {**EMAIL["args"], "subject": "Changed"}
    status, out = await decide(live, req["id"], "edit", name="Dana", args=changed)
    assert status == 200 and out["version"] == 2
    status, out = await decide(live, req["id"], "edit", name="Lee", args=EMAIL["args"])
    assert status == 200 and out["version"] == 3 and out["status"] == "pending"
    status, out = await decide(live, req["id"], "approve", name="Dana", version=3)
    assert status == 200
    assert out["status"] == "approved"
    assert out["final_args"] == out["action"]["args"] == EMAIL["args"]


async def test_reject_under_quorum_rejects_at_once(live: Live) -> None:
    req = await live.submit(body(required_approvals=3))
    await decide(live, req["id"], "approve", name="Dana")
    status, out = await decide(live, req["id"], "reject", name="Lee", feedback="not today")
    assert status == 200
    assert out["status"] == "rejected"


# --- cancel, labels, result ----------------------------------------------------------------------------


async def test_cancel_only_by_owner_and_only_while_pending(live: Live) -> None:
    req = await live.submit(body())
    other = await live.app.tokens.create(name="agent-2", role="agent")
    status, out = await live.call("POST", f"/v1/requests/{req['id']}/cancel", token=other)
    assert status == 404
    status, out = await live.call("POST", f"/v1/requests/{req['id']}/cancel", token=live.reviewer_token)
    assert status == 403
    assert_error(out, "forbidden")
    status, out = await live.call("POST", f"/v1/requests/{req['id']}/cancel", json={"reason": "not needed"})
    assert status == 200, out
    assert out["status"] == "cancelled"
    assert out["decision"]["by"]["name"] == "agent-1"
    status, out = await live.call("POST", f"/v1/requests/{req['id']}/cancel")
    assert status == 409
    assert_error(out, "already_decided")
    status, out = await decide(live, req["id"], "approve")
    assert status == 409
    approved = await live.submit(body())
    await decide(live, approved["id"], "approve")
    status, out = await live.call("POST", f"/v1/requests/{approved['id']}/cancel")
    assert status == 409
    assert "Dana" in out["error"]["message"]


async def test_labels_add_and_remove(live: Live) -> None:
    req = await live.submit(body(labels=["a"]))
    status, out = await live.call("POST", f"/v1/requests/{req['id']}/labels",
                                  json={"add": ["escalation", "needs-human-review"]})
    assert status == 200, out
    assert out["labels"] == ["a", "escalation", "needs-human-review"]
    status, out = await live.call("POST", f"/v1/requests/{req['id']}/labels",
                                  json={"remove": ["a", "never-there"], "add": ["escalation"]})
    assert status == 200
    assert out["labels"] == ["escalation", "needs-human-review"]
    status, got = await live.call("GET", f"/v1/requests/{req['id']}")
    assert got["labels"] == ["escalation", "needs-human-review"]
    status, page = await live.call("GET", "/v1/requests?label=a")
    assert page["requests"] == []
    status, out = await live.call("POST", f"/v1/requests/{req['id']}/labels", json={"add": ["x"], "remove": ["x"]})
    assert status == 422
    status, out = await live.call("POST", f"/v1/requests/{req['id']}/labels", json={"add": ["bad label"]})
    assert status == 422
    assert_error(out, "validation_failed", field="add.0")
    assert (await audit_kinds(live, req["id"])).count("labels") == 2


async def test_result_only_after_approval_and_shown_in_get(live: Live) -> None:
    req = await live.submit(body())
    status, out = await live.call("POST", f"/v1/requests/{req['id']}/result", json={"ok": True})
    assert status == 409
    assert_error(out, "conflict")
    await decide(live, req["id"], "approve")
    status, out = await live.call("POST", f"/v1/requests/{req['id']}/result",
                                  json={"ok": True, "detail": "sent, message id 42"})
    assert status == 200, out
    status, got = await live.call("GET", f"/v1/requests/{req['id']}")
    assert got["result"]["ok"] is True
    assert got["result"]["detail"] == "sent, message id 42"
    assert got["result"]["at"].endswith("Z")
    status, out = await live.call("POST", f"/v1/requests/{req['id']}/result", json={"ok": False})
    assert status == 409
    status, out = await live.call("POST", f"/v1/requests/{req['id']}/result", json={"detail": "x"})
    assert status == 422
    assert_error(out, "validation_failed", field="ok")
    rejected = await live.submit(body())
    await decide(live, rejected["id"], "reject", feedback="no")
    status, out = await live.call("POST", f"/v1/requests/{rejected['id']}/result", json={"ok": True})
    assert status == 409
    assert "result-reported" in await audit_kinds(live, req["id"])


# --- expiry ------------------------------------------------------------------------------------------------


@pytest.fixture
async def clocked(db_url: str) -> AsyncIterator[tuple[Live, FakeClock]]:
    """A live app on a fake clock, without the scheduler: the test runs the sweep itself."""
    clock = FakeClock(datetime.now(UTC))
    app = SignoffApp(make_settings(db_url), clock=clock, tuning=Tuning(run_scheduler=False))
    await app.start()
    tokens = [await app.tokens.create(name=n, role=r)
              for n, r in (("agent-1", "agent"), ("dana", "reviewer"), ("root", "admin"))]
    lv = Live(app, aiohttp.ClientSession(), *tokens)
    try:
        yield lv, clock
    finally:
        await lv.http.close()
        await app.stop()


async def test_past_deadline_is_never_pending_and_sweep_records_reason(
    clocked: tuple[Live, FakeClock],
) -> None:
    live, clock = clocked
    req = await live.submit(body(timeout_s=1))
    keep = await live.submit(body(timeout_s=3600))
    clock.advance(1.0)
    # Before any sweep ran: reads already say expired.
    status, page = await live.call("GET", "/v1/requests", token=live.admin_token)
    by_id = {r["id"]: r for r in page["requests"]}
    assert by_id[req["id"]]["status"] == "expired"
    assert by_id[keep["id"]]["status"] == "pending"
    status, page = await live.call("GET", "/v1/requests?status=pending")
    assert [r["id"] for r in page["requests"]] == [keep["id"]]
    status, got = await live.call("GET", f"/v1/requests/{req['id']}")
    assert got["status"] == "expired"
    assert got["decided_at"] is not None

    assert await live.app.service.expire_due() == 0  # the read above already finalised it
    async with live.app.db.read() as s:
        events = await repo.audit_for(s, request_id=req["id"])
    expired = [e for e in events if e.kind == "expired"]
    assert len(expired) == 1
    assert "no decision within 1 s" in expired[0].data["reason"]
    assert expired[0].via == "scheduler"

    status, out = await decide(live, req["id"], "approve")
    assert status == 409
    assert_error(out, "already_decided")
    assert "expired" in out["error"]["message"]
    status, again = await live.call("GET", f"/v1/requests/{req['id']}")
    assert again == got


async def test_sweep_expires_overdue_requests_without_reads(clocked: tuple[Live, FakeClock]) -> None:
    live, clock = clocked
    reqs = [await live.submit(body(timeout_s=1)) for _ in range(3)]
    clock.advance(0.5)
    assert await live.app.service.expire_due() == 0
    clock.advance(0.5)
    assert await live.app.service.expire_due() == 3
    assert await live.app.service.expire_due() == 0
    for r in reqs:
        assert await audit_kinds(live, r["id"]) == ["created", "expired"]
        _, got = await live.call("GET", f"/v1/requests/{r['id']}")
        assert got["status"] == "expired"
        assert got["decision"]["by"]["via"] == "scheduler"


async def test_decision_just_after_deadline_is_refused_as_expired(clocked: tuple[Live, FakeClock]) -> None:
    live, clock = clocked
    req = await live.submit(body(timeout_s=5))
    clock.advance(5.0)
    status, out = await decide(live, req["id"], "approve")  # the sweep has not run yet
    assert status == 409
    assert "expired" in out["error"]["message"]
    assert await audit_kinds(live, req["id"]) == ["created", "expired"]
    status, out = await live.call("POST", f"/v1/requests/{req['id']}/cancel")
    assert status == 409
    assert "expired" in out["error"]["message"]


async def test_scheduler_sweep_expires_in_real_time(sqlite_url: str) -> None:
    live = await start_live(sqlite_url, tuning=Tuning(expire_every_s=0.2))
    try:
        req = await live.submit(body(timeout_s=1))
        status, waited = await live.call("GET", f"/v1/requests/{req['id']}/wait?timeout_s=10")
        assert status == 200
        assert waited["status"] == "expired"
        for _ in range(50):
            if "expired" in await audit_kinds(live, req["id"]):
                break
            await asyncio.sleep(0.1)
        assert (await audit_kinds(live, req["id"])).count("expired") == 1
    finally:
        await live.http.close()
        await live.app.stop()


# --- health, readiness, metrics, OpenAPI -------------------------------------------------------------------


async def test_healthz_and_readyz(live: Live) -> None:
    async with live.http.get(live.url + "/healthz") as r:
        assert r.status == 200
        assert await r.json() == {"status": "ok"}
    async with live.http.get(live.url + "/readyz") as r:
        assert r.status == 200
        assert (await r.json())["status"] == "ready"


async def test_readyz_fails_when_the_database_is_gone(pg_server_url: str, pg_url: str) -> None:
    live = await start_live(pg_url)
    try:
        conn = await asyncpg.connect(pg_server_url)
        try:
            await conn.execute(f'DROP DATABASE "{pg_url.rsplit("/", 1)[1]}" WITH (FORCE)')
        finally:
            await conn.close()
        async with live.http.get(live.url + "/readyz") as r:
            assert r.status == 503
            assert (await r.json())["status"] == "unavailable"
        async with live.http.get(live.url + "/healthz") as r:
            assert r.status == 200
    finally:
        await live.http.close()
        await live.app.stop()


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        metric, _, rest = key.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if metric == name and got == want:
            return float(value)
    raise AssertionError(f"{name}{{{want}}} not in metrics:\n{text}")


async def test_metrics(live: Live) -> None:
    a = await live.submit(body())
    await live.submit(body())
    await live.submit(body())
    await decide(live, a["id"], "approve")
    async with live.http.get(live.url + "/metrics") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = await r.text()
    assert _metric(text, "signoff_requests", status="pending") == 2
    assert _metric(text, "signoff_requests", status="approved") == 1
    assert _metric(text, "signoff_requests", status="rejected") == 0
    assert _metric(text, "signoff_pending_requests") == 2
    assert _metric(text, "signoff_time_to_decision_seconds_count", status="approved") == 1
    assert _metric(text, "signoff_time_to_decision_seconds_bucket", status="approved", le="+Inf") == 1
    assert _metric(text, "signoff_time_to_decision_seconds_bucket", status="approved", le="60.0") == 1


async def test_openapi_lists_every_real_route(live_sqlite: Live) -> None:
    live = live_sqlite
    async with live.http.get(live.url + "/v1/openapi.json") as r:  # no token needed
        assert r.status == 200
        doc = await r.json()
    assert doc["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops
                  if method in ("get", "post", "put", "patch", "delete")}
    served = set()
    for resource in live.app.web.router.resources():
        for route in resource:
            if route.method in ("HEAD", "*"):
                continue
            served.add((resource.canonical, route.method))
    assert {p for p, _ in served if p.startswith("/v1/")}, served
    assert documented == served
    schemas = doc["components"]["schemas"]
    for ops in doc["paths"].values():
        for op in ops.values():
            ref = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            if "$ref" in ref:
                assert ref["$ref"].rsplit("/", 1)[1] in schemas
