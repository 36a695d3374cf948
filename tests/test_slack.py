"""The Slack app end to end: a live signoff app, the fake Slack Web API on loopback, signed Slack requests."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.ids import Action, Block, View
from tests.support.slack_live import (
    CHANNEL,
    DANA,
    ERIN,
    MALLORY,
    OLIVER,
    SlackLive,
    fake_slack,
    slack_app,
    start_slack_live,
)
from tests.support.slack_requests import block_action, event_callback, view_submission


@pytest.fixture
async def sl(db_url: str) -> AsyncIterator[SlackLive]:
    async with slack_app(db_url) as s:
        yield s


def _actions(blocks: list[dict[str, Any]]) -> list[str]:
    return [el.get("action_id") for b in blocks if b["type"] == "actions" for el in b["elements"]]


def _text(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


async def _submit_and_card(sl: SlackLive, **fields: Any) -> tuple[dict[str, Any], Any]:
    req = await sl.live.submit(**fields) if fields else await sl.live.submit()
    req = await sl.card_for(req["id"])
    msg = sl.slack.message(req["slack"]["channel"], req["slack"]["ts"])
    return req, msg


async def _wait_card(sl: SlackLive, req: dict[str, Any], predicate: Any, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        msg = sl.slack.message(req["slack"]["channel"], req["slack"]["ts"])
        if predicate(msg):
            return msg
        if time.monotonic() > deadline:
            raise AssertionError(f"card never matched; last blocks: {_text(msg.blocks)[:2000]}")
        await asyncio.sleep(0.02)


def _click(sl: SlackLive, req: dict[str, Any], action: str, user: str, **kw: Any) -> Any:
    return block_action(action_id=action, value=req["id"], user_id=user, channel=req["slack"]["channel"],
                        message_ts=req["slack"]["ts"], response_url=sl.slack.response_url(
                            channel=req["slack"]["channel"], user=user, message_ts=req["slack"]["ts"]), **kw)


async def test_card_posted_once_with_buttons(sl: SlackLive) -> None:
    req, msg = await _submit_and_card(sl)
    assert req["slack"]["channel"] == CHANNEL and req["slack"]["permalink"]
    assert _actions(msg.blocks)[:3] == [Action.APPROVE, Action.EDIT, Action.REJECT]
    assert "send_email" in _text(msg.blocks)
    await asyncio.sleep(0.2)
    assert len(sl.slack.calls("chat.postMessage", ok=True)) == 1


async def test_approve_updates_card_wakes_agent_and_records_identity(sl: SlackLive) -> None:
    req, _ = await _submit_and_card(sl)
    waiter = asyncio.create_task(sl.live.call("GET", f"/v1/requests/{req['id']}/wait?timeout_s=10"))
    await asyncio.sleep(0.05)
    reply = await sl.send(_click(sl, req, Action.APPROVE, DANA))
    assert reply.status == 200
    _status, decided = await asyncio.wait_for(waiter, 5)
    assert decided["status"] == "approved"
    assert decided["decision"]["by"] == {"id": DANA, "name": "Dana", "via": "slack"}
    msg = await _wait_card(sl, req, lambda m: not _actions(m.blocks))
    assert f"<@{DANA}>" in _text(msg.blocks) and "Approved" in _text(msg.blocks)
    audit = await _audit(sl, req["id"])
    decided = [e for e in audit if e["kind"] == "approved"]
    assert len(decided) == 1 and decided[0]["actor_id"] == DANA and decided[0]["actor_name"] == "Dana"
    assert decided[0]["data"]["click"] == "approve" and decided[0]["data"]["team_id"] == "T0FAKE"


async def _audit(sl: SlackLive, request_id: str) -> list[dict[str, Any]]:
    from storage import repository as repo

    async with sl.live.app.db.read() as s:
        rows = await repo.audit_for(s, request_id=request_id)
    return [{"kind": r.kind, "actor_id": r.actor_id, "actor_name": r.actor_name, "data": r.data} for r in rows]


async def test_edit_with_a_validation_error_first(sl: SlackLive) -> None:
    req, _ = await _submit_and_card(sl, action={"tool": "issue_refund", "args": {"order": "A-1", "amount": 40}})
    reply = await sl.send(_click(sl, req, Action.EDIT, DANA, trigger_id=None))
    assert reply.status == 200
    await sl.slack.wait_for("views.open", 1)
    view = sl.slack.calls("views.open", ok=True)[-1].params["view"]
    assert view["callback_id"] == View.EDIT
    amount_block = next(b["block_id"] for b in view["blocks"]
                        if b["type"] == "input" and "amount" in json.dumps(b["label"]))
    order_block = next(b["block_id"] for b in view["blocks"]
                       if b["type"] == "input" and "order" in json.dumps(b["label"]))
    action_of = {b["block_id"]: b["element"]["action_id"] for b in view["blocks"] if b["type"] == "input"}

    def submission(amount: str) -> Any:
        return view_submission(callback_id=View.EDIT, private_metadata=view["private_metadata"], user_id=DANA,
                               blocks=view["blocks"], values={
                                   amount_block: {action_of[amount_block]: {"type": "number_input", "value": amount}},
                                   order_block: {action_of[order_block]: {"type": "plain_text_input",
                                                                          "value": "A-1"}}})

    bad = await sl.send(submission("forty"))
    assert bad.status == 200
    body = bad.json()
    assert body["response_action"] == "errors" and amount_block in body["errors"]
    _, still = await sl.live.call("GET", f"/v1/requests/{req['id']}")
    assert still["status"] == "pending"
    good = await sl.send(submission("25"))
    assert good.status == 200 and not good.text.strip().startswith('{"response_action"')
    _status, done = await sl.live.call("GET", f"/v1/requests/{req['id']}")
    assert done["status"] == "modified" and done["final_args"] == {"order": "A-1", "amount": 25}
    msg = await _wait_card(sl, req, lambda m: not _actions(m.blocks))
    assert "amount" in _text(msg.blocks) and "25" in _text(msg.blocks)


async def test_reject_needs_feedback_and_shows_it(sl: SlackLive) -> None:
    req, _ = await _submit_and_card(sl)
    await sl.send(_click(sl, req, Action.REJECT, ERIN))
    await sl.slack.wait_for("views.open", 1)
    view = sl.slack.calls("views.open", ok=True)[-1].params["view"]
    assert view["callback_id"] == View.REJECT
    fb_action = next(b["element"]["action_id"] for b in view["blocks"] if b.get("block_id") == Block.FEEDBACK)

    def submission(text: str) -> Any:
        return view_submission(callback_id=View.REJECT, private_metadata=view["private_metadata"], user_id=ERIN,
                               values={Block.FEEDBACK: {fb_action: {"type": "plain_text_input", "value": text}}})

    empty = await sl.send(submission("   "))
    assert empty.json()["response_action"] == "errors"
    ok = await sl.send(submission("Use the customer's billing address"))
    assert ok.status == 200
    _status, done = await sl.live.call("GET", f"/v1/requests/{req['id']}")
    assert done["status"] == "rejected" and done["decision"]["feedback"] == "Use the customer's billing address"
    msg = await _wait_card(sl, req, lambda m: not _actions(m.blocks))
    assert "billing address" in _text(msg.blocks)


async def test_unauthorised_click_changes_nothing(sl: SlackLive) -> None:
    req, _ = await _submit_and_card(sl)
    click = _click(sl, req, Action.APPROVE, MALLORY)
    reply = await sl.send(click)
    assert reply.status == 200
    posts = await _response_posts(sl)
    assert any("not one of the reviewers" in p.get("text", "") for p in posts)
    _status, still = await sl.live.call("GET", f"/v1/requests/{req['id']}")
    assert still["status"] == "pending"
    assert any(e["kind"] == "click-refused" and e["actor_id"] == MALLORY for e in await _audit(sl, req["id"]))


async def _response_posts(sl: SlackLive, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        posts = [dict(c.params) for c in sl.slack.response_posts()]
        if len(posts) >= count or time.monotonic() > deadline:
            return posts
        await asyncio.sleep(0.02)


async def test_requester_cannot_approve_own_request(sl: SlackLive) -> None:
    req, _ = await _submit_and_card(sl, context={"summary": "mine", "requested_by_slack_user": OLIVER})
    await sl.send(_click(sl, req, Action.APPROVE, OLIVER))
    posts = await _response_posts(sl)
    assert any("cannot approve it yourself" in p.get("text", "") for p in posts)
    _status, still = await sl.live.call("GET", f"/v1/requests/{req['id']}")
    assert still["status"] == "pending"


async def test_two_reviewers_at_the_same_moment(sl: SlackLive) -> None:
    req, _ = await _submit_and_card(sl)
    waiter = asyncio.create_task(sl.live.call("GET", f"/v1/requests/{req['id']}/wait?timeout_s=10"))
    replies = await asyncio.gather(sl.send(_click(sl, req, Action.APPROVE, DANA)),
                                   sl.send(_click(sl, req, Action.APPROVE, ERIN)))
    assert all(r.status == 200 for r in replies)
    _, done = await asyncio.wait_for(waiter, 5)
    assert done["status"] == "approved"
    winner = done["decision"]["by"]["id"]
    posts = await _response_posts(sl)
    assert any("already approved by" in p.get("text", "") for p in posts)
    terminal = [e for e in await _audit(sl, req["id"]) if e["kind"] == "approved"]
    assert len(terminal) == 1 and terminal[0]["actor_id"] == winner


async def test_late_click_is_told_and_card_refreshed(sl: SlackLive) -> None:
    req, _ = await _submit_and_card(sl)
    await sl.send(_click(sl, req, Action.APPROVE, DANA))
    await _wait_card(sl, req, lambda m: not _actions(m.blocks))
    updates_before = len(sl.slack.calls("chat.update", ok=True))
    await sl.send(_click(sl, req, Action.APPROVE, ERIN))
    posts = await _response_posts(sl)
    assert any("already approved by" in p.get("text", "") and f"<@{DANA}>" in p.get("text", "") for p in posts)
    await sl.slack.wait_for("chat.update", updates_before + 1, ok=True)


async def test_result_shows_on_card(sl: SlackLive) -> None:
    req, _ = await _submit_and_card(sl)
    await sl.send(_click(sl, req, Action.APPROVE, DANA))
    await _wait_card(sl, req, lambda m: not _actions(m.blocks))
    status, out = await sl.live.call("POST", f"/v1/requests/{req['id']}/result",
                                     json={"ok": True, "detail": "sent to 1 recipient"})
    assert status == 200, out
    await _wait_card(sl, req, lambda m: "sent to 1 recipient" in _text(m.blocks))


async def test_group_membership_cached_and_refreshed_on_event(sl: SlackLive) -> None:
    first, _ = await _submit_and_card(sl)
    second, _ = await _submit_and_card(sl)
    await sl.send(_click(sl, first, Action.APPROVE, DANA))
    await sl.send(_click(sl, second, Action.APPROVE, ERIN))
    for r in (first, second):
        _, out = await sl.live.call("GET", f"/v1/requests/{r['id']}/wait?timeout_s=5")
        assert out["status"] == "approved"
    assert len(sl.slack.calls("usergroups.users.list")) == 1
    sl.slack.usergroups["S0REVIEWERS"] = [MALLORY]
    ev = event_callback({"type": "subteam_members_changed", "subteam_id": "S0REVIEWERS", "team_id": "T0FAKE",
                         "added_users": [MALLORY], "removed_users": [DANA, ERIN, OLIVER]})
    assert (await sl.send(ev)).status == 200
    third, _ = await _submit_and_card(sl)
    waiter = asyncio.create_task(sl.live.call("GET", f"/v1/requests/{third['id']}/wait?timeout_s=10"))
    await sl.send(_click(sl, third, Action.APPROVE, MALLORY))
    _, done = await asyncio.wait_for(waiter, 5)
    assert done["status"] == "approved" and len(sl.slack.calls("usergroups.users.list")) == 2


async def test_bad_signature_and_stale_timestamp_are_401(sl: SlackLive) -> None:
    req, _ = await _submit_and_card(sl)
    click = _click(sl, req, Action.APPROVE, DANA)
    forged = dict(click.headers, **{"X-Slack-Signature": "v0=" + "0" * 64})
    assert (await _post(sl, click.body, forged)).status == 401
    stale = _click(sl, req, Action.APPROVE, DANA, timestamp=int(time.time()) - 301)
    assert (await sl.send(stale)).status == 401
    _status, still = await sl.live.call("GET", f"/v1/requests/{req['id']}")
    assert still["status"] == "pending"


async def _post(sl: SlackLive, body: str, headers: dict[str, str]) -> Any:
    from tests.support.slack_requests import post_signed

    return await post_signed(sl.live.http, sl.live.url + "/slack/events", body, headers)


async def test_slack_down_during_submission_posts_once_after_recovery(db_url: str) -> None:
    async with fake_slack() as slack:
        await slack.down()
        sl = await start_slack_live(db_url, slack)
        try:
            req = await sl.live.submit()
            await asyncio.sleep(0.5)
            await slack.up()
            req = await sl.card_for(req["id"], timeout=15)
            await asyncio.sleep(0.3)
            assert len(slack.calls("chat.postMessage", ok=True)) == 1
            assert len(slack.messages_in(CHANNEL)) == 1
        finally:
            await sl.live.http.close()
            await sl.live.app.stop()


async def test_restart_delivers_undelivered_cards(db_url: str) -> None:
    async with fake_slack() as slack:
        await slack.down()
        sl = await start_slack_live(db_url, slack)
        ids = [(await sl.live.submit())["id"] for _ in range(3)]
        await sl.live.http.close()
        await sl.live.app.stop()
        await slack.up()
        from tests.support.slack_live import default_config

        again = await start_slack_live(db_url, slack, config=default_config(),
                                       token_names=("agent-2", "erin", "root-2"))
        try:
            for rid in ids:
                await again.card_for(rid, timeout=15)
            await asyncio.sleep(0.3)
            assert len(slack.calls("chat.postMessage", ok=True)) == 3
            assert len(slack.messages_in(CHANNEL)) == 3
        finally:
            await again.live.http.close()
            await again.live.app.stop()


async def test_a_click_that_fails_at_once_is_still_acknowledged(sl: SlackLive) -> None:
    """A listener failing right after its ack must not lose the ack (Slack would show the user an error)."""
    for _ in range(5):
        url = sl.slack.response_url(channel=CHANNEL, user=DANA)
        click = block_action(action_id=Action.APPROVE, value="req_00000000000000000000000000", user_id=DANA,
                             channel=CHANNEL, response_url=url)
        reply = await sl.send(click)
        assert reply.status == 200
        for _ in range(100):
            if sl.slack.response_posts(url):
                break
            await asyncio.sleep(0.02)
        assert "no request with id" in sl.slack.response_posts(url)[-1].params["text"]
