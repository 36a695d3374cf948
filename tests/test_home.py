"""App Home: published on ``app_home_opened`` with what waits for the reviewer (with buttons), what they decided
lately and counts; published again after their decisions from Slack."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.ids import Action
from storage import repository as repo
from tests.support.slack_live import DANA, MALLORY, SlackLive, slack_app
from tests.support.slack_requests import app_home_opened, block_action, event_callback


@pytest.fixture
async def sl(db_url: str) -> AsyncIterator[SlackLive]:
    async with slack_app(db_url) as s:
        yield s


def _waiting(view: dict[str, Any]) -> list[str]:
    """Request ids offered with an Approve button, in order."""
    return [el["value"] for b in view["blocks"] if b["type"] == "actions" for el in b["elements"]
            if el["action_id"] == Action.APPROVE]


def _section_after(view: dict[str, Any], header: str) -> str:
    blocks = view["blocks"]
    at = next(i for i, b in enumerate(blocks) if b["type"] == "header" and b["text"]["text"] == header)
    return json.dumps(blocks[at + 1:], ensure_ascii=False)


async def _open_home(sl: SlackLive, user: str, tab: str = "home") -> None:
    reply = await sl.send(event_callback(app_home_opened(user, tab=tab)))
    assert reply.status == 200


async def _published(sl: SlackLive, user: str, count: int, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        calls = [c for c in sl.slack.calls("views.publish", ok=True) if c.params.get("user_id") == user]
        if len(calls) >= count:
            view = sl.slack.home_view(user)
            assert view is not None
            return view
        assert time.monotonic() < deadline, f"{len(calls)} publishes for {user}, expected {count}"
        await asyncio.sleep(0.02)


async def test_home_lists_what_waits_and_is_refreshed_after_my_decision(sl: SlackLive) -> None:
    first = await sl.live.submit({"action": {"tool": "send_email", "args": {"to": "a@example.com"}},
                                  "context": {"summary": "the refund mail"}})
    second = await sl.live.submit({"action": {"tool": "run_sql", "args": {"query": "select 1"}}})
    await sl.live.submit({"action": {"tool": "deploy", "args": {}}, "reviewers": [MALLORY]})
    await _open_home(sl, DANA)
    view = await _published(sl, DANA, 1)
    assert view["type"] == "home"
    assert _waiting(view) == [first["id"], second["id"]]  # oldest first; Mallory's is not Dana's to decide
    counts = json.dumps(view["blocks"][1])
    assert "*Waiting for you*\\n2" in counts and "*Pending in total*\\n3" in counts
    assert "the refund mail" in _section_after(view, "Waiting for you")
    assert "Nothing yet" in _section_after(view, "Recently decided by you")
    # Dana approves from the Home tab itself; her Home is published again from the new state.
    click = block_action(action_id=Action.APPROVE, value=first["id"], user_id=DANA, view=view)
    assert (await sl.send(click)).status == 200
    _, done = await sl.live.call("GET", f"/v1/requests/{first['id']}/wait?timeout_s=5")
    assert done["status"] == "approved" and done["decision"]["by"]["id"] == DANA
    view = await _published(sl, DANA, 2)
    assert _waiting(view) == [second["id"]]
    decided = _section_after(view, "Recently decided by you")
    assert first["id"] in decided and "Approved" in decided
    assert "*You decided (7 days)*\\n1" in json.dumps(view["blocks"][1])


async def test_only_slack_decisions_refresh_that_reviewers_home(sl: SlackLive) -> None:
    req = await sl.live.submit()
    status, _ = await sl.live.call("POST", f"/v1/requests/{req['id']}/decision", token=sl.live.reviewer_token,
                                   json={"decision": "approve", "reviewer": DANA})
    assert status == 200
    async with sl.live.app.db.read() as s:
        assert await repo.get_outbox(s, kind="slack.home") == []
    await _open_home(sl, DANA, tab="messages")  # the Messages tab publishes nothing
    await _open_home(sl, DANA)
    view = await _published(sl, DANA, 1)
    assert len([c for c in sl.slack.calls("views.publish") if c.params.get("user_id") == DANA]) == 1
    assert _waiting(view) == []
    assert "Nothing waits for your decision" in json.dumps(view["blocks"])


async def test_a_long_queue_stays_within_the_home_limits(sl: SlackLive) -> None:
    ids = [(await sl.live.submit({"action": {"tool": "t" * 64, "args": {"x": "y" * 5000}},
                                  "context": {"summary": "<&>" * 1300}, "labels": [f"l{i}" for i in range(32)]}))["id"]
           for _ in range(14)]
    await _open_home(sl, DANA)
    view = await _published(sl, DANA, 1)
    assert len(view["blocks"]) <= 100
    assert _waiting(view) == ids[:10]
    assert "4 more wait for you" in json.dumps(view["blocks"])
