"""Burst coalescing: many requests for one channel at once become a few batch cards, never a 429 storm, and every
request stays reachable from a card and decidable on its own."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.config import SlackConfig, parse_config
from bot.ids import Action
from tests.support.fakeslack import Message
from tests.support.slack_live import CHANNEL, DANA, REVIEWERS_GROUP, SlackLive, fake_slack, start_slack_live
from tests.support.slack_requests import block_action


def _config(after: int = 5, window_s: float = 1.0) -> Any:
    return parse_config({"slack": {"default_channel": CHANNEL, "coalesce_after": after,
                                   "coalesce_window_s": window_s}, "reviewers": [REVIEWERS_GROUP]})


@pytest.fixture
async def sl(db_url: str) -> AsyncIterator[SlackLive]:
    async with fake_slack() as slack:  # the fake allows 1 post per second per channel, bursts of 3
        s = await start_slack_live(db_url, slack, config=_config())
        try:
            yield s
        finally:
            await s.live.http.close()
            await s.live.app.stop()
        slack.assert_no_breaches()


async def _burst(sl: SlackLive, n: int) -> list[str]:
    reqs = await asyncio.gather(*(sl.live.submit({"action": {"tool": "send_email", "args": {"to": f"c{i}@x.com"}}})
                                  for i in range(n)))
    return [r["id"] for r in reqs]


async def _cards(sl: SlackLive, ids: list[str], timeout: float = 30.0) -> dict[str, dict[str, Any]]:
    out = {}
    for rid in ids:
        out[rid] = await sl.card_for(rid, timeout=timeout)
    return out


def _offered(msg: Message) -> set[str]:
    """The requests a message lets reviewers decide: a single card's Approve, a batch card's per-item Approve."""
    return {el["value"] for b in msg.blocks if b["type"] == "actions" for el in b["elements"]
            if el.get("action_id") in (Action.APPROVE, Action.BATCH_APPROVE_ITEM)}


async def test_a_burst_of_50_becomes_a_few_cards_without_429s(sl: SlackLive) -> None:
    ids = await _burst(sl, 50)
    cards = await _cards(sl, ids)
    top = [m for m in sl.slack.messages_in(CHANNEL) if m.thread_ts is None]
    assert len(top) <= 5, f"{len(top)} cards for a burst of 50"
    assert sl.slack.ratelimited <= 1
    for rid, req in cards.items():  # every request is on the card recorded for it, with its own buttons
        assert rid in _offered(sl.slack.message(req["slack"]["channel"], req["slack"]["ts"]))
    assert len(sl.slack.calls("chat.postMessage", ok=True)) == len(top)
    # One item of a batch card decided on its own: only it changes.
    batch_card = next(m for m in top if any(b["type"] == "header" and ":package:" in b["text"]["text"]
                                            for b in m.blocks))
    rid = sorted(_offered(batch_card))[0]
    url = sl.slack.response_url(channel=CHANNEL, user=DANA, message_ts=batch_card.ts)
    await sl.send(block_action(action_id=Action.BATCH_APPROVE_ITEM, value=rid, user_id=DANA, channel=CHANNEL,
                               message_ts=batch_card.ts, response_url=url))
    _, done = await sl.live.call("GET", f"/v1/requests/{rid}/wait?timeout_s=5")
    assert done["status"] == "approved"
    others = [r for r in _offered(batch_card) if r != rid]
    statuses = [(await sl.live.call("GET", f"/v1/requests/{r}"))[1]["status"] for r in others]
    assert set(statuses) == {"pending"}
    deadline = time.monotonic() + 10
    while rid in _offered(sl.slack.message(CHANNEL, batch_card.ts)):
        assert time.monotonic() < deadline, "the batch card was not updated"
        await asyncio.sleep(0.02)
    assert set(others) <= _offered(sl.slack.message(CHANNEL, batch_card.ts))
    assert "1 approved" in json.dumps(sl.slack.message(CHANNEL, batch_card.ts).blocks)


async def test_a_few_requests_at_once_still_get_a_card_each(sl: SlackLive) -> None:
    ids = await _burst(sl, 4)  # not more than coalesce_after
    cards = await _cards(sl, ids)
    assert len({(c["slack"]["channel"], c["slack"]["ts"]) for c in cards.values()}) == 4
    for rid, req in cards.items():
        assert _offered(sl.slack.message(CHANNEL, req["slack"]["ts"])) == {rid}
    assert sl.slack.ratelimited == 0


async def test_a_lone_request_is_posted_as_its_own_card(sl: SlackLive) -> None:
    (rid,) = await _burst(sl, 1)
    req = (await _cards(sl, [rid]))[rid]
    msg = sl.slack.message(CHANNEL, req["slack"]["ts"])
    assert _offered(msg) == {rid} and msg.blocks[-1]["block_id"] == "signoff_actions"


async def test_other_channels_are_not_held_up_by_a_burst(sl: SlackLive) -> None:
    burst = asyncio.create_task(_burst(sl, 30))
    other = await sl.live.submit({"action": {"tool": "deploy", "args": {}}, "channel": "C0DEPLOYS"})
    ids = await burst
    card = await sl.card_for(other["id"], timeout=10)
    assert card["slack"]["channel"] == "C0DEPLOYS"
    assert _offered(sl.slack.message("C0DEPLOYS", card["slack"]["ts"])) == {other["id"]}
    await _cards(sl, ids)
    assert sl.slack.ratelimited <= 1


def test_coalescing_is_configured_with_sane_defaults() -> None:
    assert SlackConfig().coalesce_after == 5 and SlackConfig().coalesce_window_s == 2.0
    assert _config(after=10, window_s=0.5).slack.coalesce_after == 10
    with pytest.raises(Exception, match="coalesce_after"):
        parse_config({"slack": {"coalesce_after": 0}})
