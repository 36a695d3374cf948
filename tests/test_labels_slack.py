"""Labels from the card's overflow menu: add and remove, and Escalate (label, escalation channel with a link to the
card, a reply in the card's thread), only by the request's reviewers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.blocks_labels import label_menu, parse_label_choice
from bot.config import parse_config
from bot.ids import Action
from storage import repository as repo
from tests.support.fakeslack import Message
from tests.support.polling import until
from tests.support.slack_live import CHANNEL, DANA, MALLORY, REVIEWERS_GROUP, SlackLive, fake_slack, start_slack_live
from tests.support.slack_requests import block_action

ESCALATE_TO = "C0ESCALATE"


@pytest.fixture
async def sl(db_url: str) -> AsyncIterator[SlackLive]:
    config = parse_config({"slack": {"default_channel": CHANNEL}, "reviewers": [REVIEWERS_GROUP],
                           "escalation": {"channel": ESCALATE_TO, "mention": ["S0ONCALL"], "label": "escalation"}})
    async with fake_slack() as slack:
        s = await start_slack_live(db_url, slack, config=config)
        try:
            yield s
        finally:
            await s.live.http.close()
            await s.live.app.stop()
        slack.assert_no_breaches()


def _menu(msg: Message) -> dict[str, str]:
    """The card's overflow options: text → value."""
    for b in msg.blocks:
        for el in b.get("elements") or []:
            if el.get("action_id") == Action.OVERFLOW:
                return {o["text"]["text"]: o["value"] for o in el["options"]}
    return {}


async def _choose(sl: SlackLive, req: dict[str, Any], text: str, user: str = DANA,
                  value: str | None = None) -> str:
    """Pick an overflow option on the request's card; returns the ephemeral answer."""
    msg = sl.slack.message(req["slack"]["channel"], req["slack"]["ts"])
    value = value or _menu(msg)[text]
    url = sl.slack.response_url(channel=CHANNEL, user=user, message_ts=msg.ts)
    before = len(sl.slack.response_posts(url))
    click = block_action(action_id=Action.OVERFLOW, action_type="overflow", block_id="signoff_actions",
                         selected_option={"text": {"type": "plain_text", "text": text}, "value": value},
                         user_id=user, channel=CHANNEL, message_ts=msg.ts, message=msg.to_payload(),
                         response_url=url)
    assert (await sl.send(click)).status == 200
    posts = await until(lambda: sl.slack.response_posts(url)[before:], "no answer to the menu choice")
    return str(posts[0].params.get("text"))


async def _labels(sl: SlackLive, rid: str) -> list[str]:
    return list((await sl.live.call("GET", f"/v1/requests/{rid}"))[1]["labels"])


async def test_add_and_remove_a_label_from_the_card(sl: SlackLive) -> None:
    req = await sl.card_for((await sl.live.submit(labels=["refunds"]))["id"])
    menu = _menu(sl.slack.message(CHANNEL, req["slack"]["ts"]))
    assert list(menu) == [":rotating_light: Escalate", "Add label: needs-human-review", "Remove label: refunds"]
    answer = await _choose(sl, req, "Add label: needs-human-review")
    assert "Added the label `needs-human-review`" in answer
    assert await _labels(sl, req["id"]) == ["needs-human-review", "refunds"]
    card = await until(lambda: "Remove label: needs-human-review" in _menu(
        sl.slack.message(CHANNEL, req["slack"]["ts"])), "the card's menu was not updated")
    assert card
    assert "`needs-human-review`" in json.dumps(sl.slack.message(CHANNEL, req["slack"]["ts"]).blocks)
    assert "Removed the label `refunds`" in await _choose(sl, req, "Remove label: refunds")
    assert await _labels(sl, req["id"]) == ["needs-human-review"]
    async with sl.live.app.db.read() as s:
        events = [e for e in await repo.audit_for(s, request_id=req["id"]) if e.kind == "labels"]
    assert [(e.actor_id, e.via, e.data) for e in events] == [
        (DANA, "slack", {"added": ["needs-human-review"], "removed": []}),
        (DANA, "slack", {"added": [], "removed": ["refunds"]})]


async def test_escalate_labels_posts_to_the_escalation_channel_with_a_link_and_replies_in_the_thread(
        sl: SlackLive) -> None:
    req = await sl.card_for((await sl.live.submit(context={"summary": "refund over the limit"}))["id"])
    answer = await _choose(sl, req, ":rotating_light: Escalate")
    assert "Escalated" in answer and f"<#{ESCALATE_TO}>" in answer
    assert await _labels(sl, req["id"]) == ["escalation"]
    notice = (await until(lambda: sl.slack.messages_in(ESCALATE_TO), "nothing in the escalation channel"))[0]
    text = json.dumps(notice.blocks)
    assert req["slack"]["permalink"] in text and "<!subteam^S0ONCALL>" in text and f"<@{DANA}>" in text
    assert "refund over the limit" in text
    reply = (await until(lambda: sl.slack.replies(CHANNEL, req["slack"]["ts"]), "no reply in the card's thread"))[0]
    assert f"<#{ESCALATE_TO}>" in json.dumps(reply.blocks)
    await until(lambda: ":rotating_light: Escalate" not in _menu(sl.slack.message(CHANNEL, req["slack"]["ts"])),
                "the card still offers Escalate")
    # A stale card's Escalate does not escalate twice.
    again = await _choose(sl, req, ":rotating_light: Escalate", value=f"esc|escalation|{req['id']}")
    assert "already escalated" in again
    async with sl.live.app.db.read() as s:
        kinds = [(e.kind, e.actor_id) for e in await repo.audit_for(s, request_id=req["id"])]
        notices = [r for r in await repo.get_outbox(s, kind="slack.message") if r.payload["channel"] == ESCALATE_TO]
    assert kinds.count(("escalated", DANA)) == 1 and len(notices) == 1


async def test_only_reviewers_change_labels(sl: SlackLive) -> None:
    req = await sl.card_for((await sl.live.submit())["id"])
    answer = await _choose(sl, req, "Add label: needs-human-review", user=MALLORY)
    assert "not one of the reviewers" in answer
    assert await _labels(sl, req["id"]) == []
    answer = await _choose(sl, req, ":rotating_light: Escalate", user=MALLORY)
    assert "not one of the reviewers" in answer
    assert sl.slack.messages_in(ESCALATE_TO) == []


def test_the_menu_fits_slack_limits_and_round_trips() -> None:
    rid = "req_01jd4x8k2m3n4p5q6r7s8t9v0w"
    menu = label_menu({"id": rid, "labels": [f"{i}" * 64 for i in range(10)]}).to_dict()
    assert len(menu["options"]) == 5
    for option in menu["options"]:
        assert len(option["text"]["text"]) <= 75 and len(option["value"]) <= 150
        choice = parse_label_choice(option["value"])
        assert choice is not None and choice.request_id == rid
    assert parse_label_choice("drop|x") is None and parse_label_choice("rm||req_1") is None
