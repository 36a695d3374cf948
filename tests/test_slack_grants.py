"""Policies and grants seen from Slack: "Approve + allow" on a card, FYI cards for auto-approvals."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.ids import Action, Block, View
from tests.support.slack_live import CHANNEL, DANA, MALLORY, SlackLive, default_config, fake_slack, start_slack_live
from tests.support.slack_requests import block_action, view_submission


@pytest.fixture
async def sl(sqlite_url: str) -> AsyncIterator[SlackLive]:
    config = default_config(policies=[
        {"name": "cc-a-human", "match": {"tool": "send_newsletter"}, "effect": "auto_approve", "watch": "C0WATCH"}])
    async with fake_slack() as slack:
        s = await start_slack_live(sqlite_url, slack, config=config)
        try:
            yield s
        finally:
            await s.live.http.close()
            await s.live.app.stop()
        slack.assert_no_breaches()


def _click(sl: SlackLive, req: dict[str, Any], action: str, user: str) -> Any:
    return block_action(action_id=action, value=req["id"], user_id=user, channel=req["slack"]["channel"],
                        message_ts=req["slack"]["ts"], response_url=sl.slack.response_url(
                            channel=req["slack"]["channel"], user=user, message_ts=req["slack"]["ts"]))


async def test_approve_and_allow_for_four_hours(sl: SlackLive) -> None:
    req = await sl.card_for((await sl.live.submit(action={"tool": "deploy", "args": {"service": "web"}}))["id"])
    card = sl.slack.message(CHANNEL, req["slack"]["ts"])
    assert Action.APPROVE_GRANT in json.dumps(card.blocks)
    await sl.send(_click(sl, req, Action.APPROVE_GRANT, DANA))
    await sl.slack.wait_for("views.open", 1)
    view = sl.slack.calls("views.open", ok=True)[-1].params["view"]
    assert view["callback_id"] == View.GRANT
    actions = {b["block_id"]: b["element"]["action_id"] for b in view["blocks"] if b["type"] == "input"}
    reply = await sl.send(view_submission(
        callback_id=View.GRANT, private_metadata=view["private_metadata"], user_id=DANA, values={
            Block.GRANT_DURATION: {actions[Block.GRANT_DURATION]: {
                "type": "radio_buttons", "selected_option": {"value": "14400"}}},
            Block.GRANT_SCOPE: {actions[Block.GRANT_SCOPE]: {
                "type": "radio_buttons", "selected_option": {"value": "any"}}}}))
    assert reply.status == 200 and "errors" not in reply.text
    _, decided = await sl.live.call("GET", f"/v1/requests/{req['id']}")
    assert decided["status"] == "approved" and decided["decision"]["by"]["id"] == DANA
    grants = sl.live.app.service.grants
    assert grants is not None
    active = await grants.refresh()
    assert len(active) == 1 and active[0].grant.tool == "deploy" and active[0].grant.args is None
    remaining = (active[0].grant.expires_at - datetime.now(UTC)).total_seconds()
    assert 14_300 < remaining <= 14_400
    nxt = await sl.live.submit(action={"tool": "deploy", "args": {"service": "api"}})
    assert nxt["status"] == "approved" and nxt["decision"]["rule"] == f"grant:{active[0].id}"


async def test_only_reviewers_may_grant(sl: SlackLive) -> None:
    req = await sl.card_for((await sl.live.submit(action={"tool": "deploy", "args": {}}))["id"])
    await sl.send(_click(sl, req, Action.APPROVE_GRANT, MALLORY))
    for _ in range(100):
        if sl.slack.response_posts():
            break
        await asyncio.sleep(0.02)
    assert any("not one of the reviewers" in c.params.get("text", "") for c in sl.slack.response_posts())
    assert sl.slack.calls("views.open") == []


async def test_auto_approval_posts_an_fyi_card_without_buttons(sl: SlackLive) -> None:
    out = await sl.live.submit(action={"tool": "send_newsletter", "args": {"list": "all"}})
    assert out["status"] == "approved" and out["channel"] == "C0WATCH"
    card = await sl.card_for(out["id"])
    msg = sl.slack.message("C0WATCH", card["slack"]["ts"])
    blocks = json.dumps(msg.blocks)
    assert "cc-a-human" in blocks
    assert not [b for b in msg.blocks if b["type"] == "actions"]


async def test_signoff_grants_lists_and_revokes(sl: SlackLive) -> None:
    from bot.domain import Actor
    from tests.support.slack_requests import slash_command

    grants = sl.live.app.service.grants
    assert grants is not None
    g = await grants.create(agent="agent-1", tool="deploy", args={"service": "web"}, duration_s=3600,
                            actor=Actor(DANA, "Dana", "slack"), request_id=None)
    url = sl.slack.response_url(channel=CHANNEL, user=DANA)
    command = slash_command(text="grants", user_id=DANA, channel_id=CHANNEL, response_url=url)
    assert (await sl.send(command)).status == 200
    for _ in range(200):
        if sl.slack.response_posts(url):
            break
        await asyncio.sleep(0.02)
    listing = sl.slack.response_posts(url)[-1].params
    shown = json.dumps(listing["blocks"])
    assert "agent-1" in shown and "deploy" in shown and "these args only" in shown and Action.REVOKE_GRANT in shown
    revoke = block_action(action_id=Action.REVOKE_GRANT, value=g.id, user_id=DANA, channel=CHANNEL,
                          response_url=url, block_id="grants")
    assert (await sl.send(revoke)).status == 200
    for _ in range(200):
        if len(sl.slack.response_posts(url)) >= 2:
            break
        await asyncio.sleep(0.02)
    assert "No active grants" in json.dumps(sl.slack.response_posts(url)[-1].params)
    assert await grants.refresh() == []
    out = await sl.live.submit(action={"tool": "deploy", "args": {"service": "web"}})
    assert out["status"] == "pending"
