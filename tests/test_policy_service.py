"""Policies at submission: deny, auto-approve (with an FYI channel), require, budgets (raced), grants,
SIGNOFF_MODE=off and the explain endpoint — through the live API on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.config import parse_config
from bot.domain import Actor
from tests.conftest import Live, start_live

POLICIES: list[dict[str, Any]] = [
    {"name": "no-drop", "match": {"tool": "run_sql", "args": {"query": {"regex": "(?i)\\bdrop\\s+table\\b"}}},
     "effect": "deny", "reason": "DROP TABLE is never allowed; write a migration instead"},
    {"name": "trusted-recipients", "match": {"tool": "send_email", "args": {"to": {"domain_in": ["trusted.com"]}}},
     "effect": "auto_approve", "watch": "C0WATCH"},
    {"name": "outside-allowlist",
     "match": {"tool": "send_email", "args": {"to": {"not": {"domain_in": ["trusted.com", "partner.com"]}}}},
     "effect": "deny", "reason": "Recipients must be on the allowlist"},
    {"name": "big-refunds", "match": {"tool": "issue_refund", "args": {"amount": {"gt": 500}}},
     "effect": "require", "required_approvals": 2, "reviewers": ["S0FINANCE"], "channel": "C0FINANCE",
     "timeout_s": 600},
    {"name": "update-budget", "match": {"tool": "post_update"}, "effect": "budget",
     "budget": {"max": 10, "window_s": 3600}},
]


@pytest.fixture
async def pl(db_url: str) -> AsyncIterator[Live]:
    live = await start_live(db_url, config=parse_config({"slack": {"default_channel": "C0APPROVALS"},
                                                         "policies": POLICIES}))
    try:
        yield live
    finally:
        await live.http.close()
        await live.app.stop()


async def _submit(live: Live, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    status, out = await live.call("POST", "/v1/requests", json={"action": {"tool": tool, "args": args}})
    assert status == 201, out
    return dict(out)


async def test_deny_answers_201_rejected_with_the_reason(pl: Live) -> None:
    out = await _submit(pl, "run_sql", {"query": "drop table users"})
    assert out["status"] == "rejected"
    assert out["decision"]["by"]["via"] == "policy" and out["decision"]["rule"] == "policy:no-drop"
    assert out["decision"]["feedback"] == "DROP TABLE is never allowed; write a migration instead"
    assert out["channel"] is None


async def test_allowlist_pattern(pl: Live) -> None:
    ok = await _submit(pl, "send_email", {"to": ["a@trusted.com", "b@trusted.com"]})
    assert ok["status"] == "approved" and ok["final_args"] == {"to": ["a@trusted.com", "b@trusted.com"]}
    assert ok["channel"] == "C0WATCH"  # an FYI card goes to the watch channel
    out = await _submit(pl, "send_email", {"to": ["a@trusted.com", "x@evil.com"]})
    assert out["status"] == "rejected" and out["decision"]["feedback"] == "Recipients must be on the allowlist"
    partner = await _submit(pl, "send_email", {"to": "p@partner.com"})
    assert partner["status"] == "pending" and partner["rule"] is None


async def test_require_routes_with_its_own_quorum(pl: Live) -> None:
    out = await _submit(pl, "issue_refund", {"amount": 900})
    assert out["status"] == "pending" and out["rule"] == "policy:big-refunds"
    assert out["channel"] == "C0FINANCE" and out["reviewers"] == ["S0FINANCE"] and out["required_approvals"] == 2
    from datetime import datetime

    created = datetime.fromisoformat(out["created_at"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(out["expires_at"].replace("Z", "+00:00"))
    assert (expires - created).total_seconds() == 600
    small = await _submit(pl, "issue_refund", {"amount": 20})
    assert small["rule"] is None and small["required_approvals"] == 1


async def test_budget_race_never_exceeds_the_maximum(pl: Live) -> None:
    outs = await asyncio.gather(*(_submit(pl, "post_update", {"n": i}) for i in range(30)))
    statuses = [o["status"] for o in outs]
    assert statuses.count("approved") == 10 and statuses.count("pending") == 20
    assert all(o["rule"] == "policy:update-budget" for o in outs)
    approved = [o for o in outs if o["status"] == "approved"]
    assert all(o["decision"]["by"]["via"] == "policy" for o in approved)


async def test_grant_auto_approves_until_revoked(pl: Live) -> None:
    first = await _submit(pl, "deploy", {"service": "web"})
    assert first["status"] == "pending"
    grants = pl.app.service.grants
    assert grants is not None
    g = await grants.create(agent="agent-1", tool="deploy", args=None, duration_s=3600,
                            actor=Actor("U0DANA", "Dana", "slack"), request_id=first["id"])
    second = await _submit(pl, "deploy", {"service": "api"})
    assert second["status"] == "approved" and second["decision"]["rule"] == f"grant:{g.id}"
    other_tool = await _submit(pl, "rollback", {"service": "api"})
    assert other_tool["status"] == "pending"
    await grants.revoke(grant_id=g.id, actor=Actor("U0DANA", "Dana", "slack"))
    third = await _submit(pl, "deploy", {"service": "api"})
    assert third["status"] == "pending"


async def test_a_deny_rule_wins_over_a_grant(pl: Live) -> None:
    grants = pl.app.service.grants
    assert grants is not None
    await grants.create(agent="agent-1", tool="run_sql", args=None, duration_s=600,
                        actor=Actor("U0DANA", "Dana", "slack"), request_id=None)
    out = await _submit(pl, "run_sql", {"query": "DROP TABLE x"})
    assert out["status"] == "rejected"
    fine = await _submit(pl, "run_sql", {"query": "select 1"})
    assert fine["status"] == "approved" and fine["decision"]["rule"].startswith("grant:")


async def test_evaluate_explains_without_creating(pl: Live) -> None:
    status, out = await pl.call("POST", "/v1/policy/evaluate",
                                json={"action": {"tool": "send_email", "args": {"to": "x@evil.com"}}})
    assert status == 200, out
    assert out["decision"]["effect"] == "deny" and out["decision"]["rule"] == "outside-allowlist"
    assert out["outcome"] == "rejected"
    why = {r["rule"]: r for r in out["rules"]}
    assert why["trusted-recipients"]["matched"] is False and "evil.com" in why["trusted-recipients"]["why"]
    status, page = await pl.call("GET", "/v1/requests")
    assert page["requests"] == []
    status, out = await pl.call("POST", "/v1/policy/evaluate", json={
        "action": {"tool": "noop", "args": {}}, "agent": "someone-else"})
    assert status == 403
    status, out = await pl.call("POST", "/v1/policy/evaluate", token=pl.admin_token, json={
        "action": {"tool": "issue_refund", "args": {"amount": 501}}, "agent": "someone-else"})
    assert status == 200 and out["agent"] == "someone-else" and out["routing"]["required_approvals"] == 2


async def test_mode_off_on_the_server_approves_everything(db_url: str) -> None:
    live = await start_live(db_url, config=parse_config({"policies": POLICIES}), mode="off")
    try:
        out = await _submit(live, "run_sql", {"query": "drop table users"})
        assert out["status"] == "approved" and out["decision"]["rule"] == "SIGNOFF_MODE=off"
        assert out["decision"]["by"]["via"] == "policy"
    finally:
        await live.http.close()
        await live.app.stop()
