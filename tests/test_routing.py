"""Routing: the config's routes (tool glob, risk, labels, agent) first, then the request's channel, then the
default channel; reviewers and quorum per route."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.config import parse_config
from tests.conftest import Live, start_live

CONFIG = {
    "slack": {"default_channel": "C0DEFAULT"},
    "reviewers": ["S0REVIEWERS"],
    "routes": [
        {"match": {"tool": "deploy*", "risk": ["high", "critical"]}, "channel": "C0DEPLOYS",
         "reviewers": ["S0SRE"], "required_approvals": 2},
        {"match": {"labels": ["finance"]}, "channel": "C0FINANCE", "reviewers": ["U0CFO"]},
        {"match": {"agent": "billing-*"}, "reviewers": ["S0BILLING"], "timeout_s": 120},
    ],
}


@pytest.fixture
async def rl(sqlite_url: str) -> AsyncIterator[Live]:
    live = await start_live(sqlite_url, config=parse_config(CONFIG))
    try:
        yield live
    finally:
        await live.http.close()
        await live.app.stop()


async def test_first_matching_route_decides_channel_reviewers_and_quorum(rl: Live) -> None:
    out = await rl.submit(action={"tool": "deploy_web", "args": {}}, risk="critical")
    assert (out["channel"], out["reviewers"], out["required_approvals"], out["rule"]) == (
        "C0DEPLOYS", ["S0SRE"], 2, "route:0")
    low = await rl.submit(action={"tool": "deploy_web", "args": {}}, risk="low")
    assert (low["channel"], low["reviewers"], low["required_approvals"], low["rule"]) == (
        "C0DEFAULT", ["S0REVIEWERS"], 1, None)


async def test_labels_route(rl: Live) -> None:
    out = await rl.submit(action={"tool": "refund", "args": {}}, labels=["finance", "vip"])
    assert (out["channel"], out["reviewers"], out["rule"]) == ("C0FINANCE", ["U0CFO"], "route:1")


async def test_request_channel_beats_the_default_but_not_explicit_reviewers(rl: Live) -> None:
    out = await rl.submit(action={"tool": "send_email", "args": {}}, channel="C0MINE", reviewers=["U0ME"])
    assert (out["channel"], out["reviewers"]) == ("C0MINE", ["U0ME"])
    plain = await rl.submit(action={"tool": "send_email", "args": {}})
    assert (plain["channel"], plain["reviewers"]) == ("C0DEFAULT", ["S0REVIEWERS"])


async def test_agent_route_keeps_the_default_channel_and_sets_the_timeout(sqlite_url: str) -> None:
    live = await start_live(sqlite_url, config=parse_config(CONFIG),
                            token_names=("billing-bot", "dana", "root"))
    try:
        out = await live.submit(action={"tool": "charge", "args": {}})
        assert (out["channel"], out["reviewers"], out["rule"]) == ("C0DEFAULT", ["S0BILLING"], "route:2")
        from datetime import datetime

        span = (datetime.fromisoformat(out["expires_at"].replace("Z", "+00:00"))
                - datetime.fromisoformat(out["created_at"].replace("Z", "+00:00"))).total_seconds()
        assert span == 120
    finally:
        await live.http.close()
        await live.app.stop()
