"""``/signoff`` end to end (signed slash commands and clicks, the fake Slack Web API, a live app) and the pure
parsing and rendering behind it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.blocks_limits import check_message_limits
from bot.blocks_lists import pending_reply
from bot.commands import Command, CommandError, Filters, PageRef, decode_page, encode_page, parse
from bot.config import parse_config
from bot.domain import new_id
from bot.ids import Action
from bot.listing import PageResult
from storage import repository as repo
from tests.support.fakeslack import Ephemeral, FakeSlack
from tests.support.slack_live import DANA, ERIN, MALLORY, USERS, SlackLive, start_slack_live
from tests.support.slack_requests import block_action, slash_command

CHANNEL = "C0APPROVALS"


@pytest.fixture
async def sl(db_url: str) -> AsyncIterator[SlackLive]:
    # No default channel: these requests get no cards, so the tests are about the replies alone.
    async with FakeSlack(usergroups={"S0FINANCE": [DANA, ERIN]}, users=USERS) as slack:
        s = await start_slack_live(db_url, slack, config=parse_config({}))
        try:
            yield s
        finally:
            await s.live.http.close()
            await s.live.app.stop()
        slack.assert_no_breaches()


async def _command(sl: SlackLive, text: str, user: str = DANA) -> tuple[Ephemeral, str]:
    """Send ``/signoff <text>``; return the ephemeral reply and the response_url it came through."""
    url = sl.slack.response_url(channel=CHANNEL, user=user)
    before = len(sl.slack.ephemerals(user=user))
    reply = await sl.send(slash_command(text=text, user_id=user, channel_id=CHANNEL, response_url=url))
    assert reply.status == 200
    return await _next_ephemeral(sl, user, before), url


async def _next_ephemeral(sl: SlackLive, user: str, before: int, timeout: float = 5.0) -> Ephemeral:
    deadline = time.monotonic() + timeout
    while True:
        found = sl.slack.ephemerals(user=user)
        if len(found) > before:
            return found[-1]
        if time.monotonic() > deadline:
            raise AssertionError(f"no ephemeral reply; calls: {[c.method for c in sl.slack.calls()]}")
        await asyncio.sleep(0.02)


def _listed(blocks: list[dict[str, Any]]) -> list[str]:
    """The request ids a reply lists (the values of its Show buttons)."""
    return [b["accessory"]["value"] for b in blocks
            if b["type"] == "section" and (b.get("accessory") or {}).get("action_id") == Action.SHOW]


def _button(blocks: list[dict[str, Any]], action_id: str) -> dict[str, Any] | None:
    for b in blocks:
        for el in b.get("elements") or []:
            if el.get("action_id") == action_id:
                return dict(el)
    return None


async def _click_page(sl: SlackLive, eph: Ephemeral, action_id: str, user: str = DANA) -> None:
    button = _button(eph.blocks, action_id)
    assert button is not None, f"no {action_id} button"
    replaced = eph.replaced
    url = sl.slack.response_url(channel=CHANNEL, user=user, message_ts=eph.ts)
    reply = await sl.send(block_action(action_id=action_id, value=button["value"], user_id=user, channel=CHANNEL,
                                       message_ts=eph.ts, is_ephemeral=True, response_url=url))
    assert reply.status == 200
    deadline = time.monotonic() + 5
    while eph.replaced == replaced:
        assert time.monotonic() < deadline, "the page was not replaced"
        await asyncio.sleep(0.02)


async def _submit_many(sl: SlackLive, n: int, **fields: Any) -> list[str]:
    ids = []
    for i in range(n):
        req = await sl.live.submit({"action": {"tool": "send_email", "args": {"to": f"c{i}@example.com"}},
                                    **fields})
        ids.append(req["id"])
    return ids


async def test_pending_pages_forward_and_back_through_the_response_url(sl: SlackLive) -> None:
    ids = await _submit_many(sl, 23)
    newest = ids[::-1]
    eph, _ = await _command(sl, "pending")
    assert _listed(eph.blocks) == newest[:10]
    assert "23" in json.dumps(eph.blocks) and _button(eph.blocks, Action.PAGE_PREV) is None
    await _click_page(sl, eph, Action.PAGE_NEXT)
    assert _listed(eph.blocks) == newest[10:20]
    assert _button(eph.blocks, Action.PAGE_PREV) is not None
    await _click_page(sl, eph, Action.PAGE_NEXT)
    assert _listed(eph.blocks) == newest[20:]
    assert _button(eph.blocks, Action.PAGE_NEXT) is None
    await _click_page(sl, eph, Action.PAGE_PREV)
    assert _listed(eph.blocks) == newest[10:20]
    await _click_page(sl, eph, Action.PAGE_PREV)
    assert _listed(eph.blocks) == newest[:10]
    assert _button(eph.blocks, Action.PAGE_PREV) is None
    assert len(sl.slack.ephemerals(user=DANA)) == 1  # every page replaced the one reply


async def test_drafts_alias_and_filters_narrow_the_list(sl: SlackLive) -> None:
    emails = await _submit_many(sl, 2, labels=["escalation"])
    refund = await sl.live.submit({"action": {"tool": "issue_refund", "args": {"amount": 5}}, "risk": "high"})
    eph, _ = await _command(sl, "drafts tool:issue_refund")
    assert _listed(eph.blocks) == [refund["id"]]
    eph, _ = await _command(sl, "pending label:escalation risk:medium")
    assert _listed(eph.blocks) == emails[::-1]
    eph, _ = await _command(sl, "pending risk:high agent:agent-1")
    assert _listed(eph.blocks) == [refund["id"]]
    eph, _ = await _command(sl, "pending agent:someone-else")
    assert _listed(eph.blocks) == [] and "Nothing is pending" in json.dumps(eph.blocks)


async def test_unknown_subcommand_and_filter_get_helpful_errors(sl: SlackLive) -> None:
    eph, _ = await _command(sl, "pendng")
    assert "is not a /signoff subcommand" in eph.text and "Did you mean `pending`" in eph.text
    eph, _ = await _command(sl, "pending colour:red")
    assert "`colour:` is not a filter" in eph.text and "`label:`" in eph.text
    eph, _ = await _command(sl, "pending risk:extreme")
    assert "`risk:extreme` is not a risk" in eph.text
    eph, _ = await _command(sl, "show nonsense")
    assert "is not a request id" in eph.text
    eph, _ = await _command(sl, "help")
    assert "/signoff mine" in json.dumps(eph.blocks)


async def test_show_answers_the_card_with_working_buttons(sl: SlackLive) -> None:
    (rid,) = await _submit_many(sl, 1)
    eph, _ = await _command(sl, f"show {rid}")
    approve = _button(eph.blocks, Action.APPROVE)
    assert approve is not None and approve["value"] == rid
    assert _button(eph.blocks, Action.REJECT) is not None and "send_email" in json.dumps(eph.blocks)
    url = sl.slack.response_url(channel=CHANNEL, user=DANA, message_ts=eph.ts)
    await sl.send(block_action(action_id=Action.APPROVE, value=rid, user_id=DANA, channel=CHANNEL,
                               message_ts=eph.ts, is_ephemeral=True, response_url=url))
    _, done = await sl.live.call("GET", f"/v1/requests/{rid}/wait?timeout_s=5")
    assert done["status"] == "approved" and done["decision"]["by"]["id"] == DANA
    deadline = time.monotonic() + 5
    while eph.replaced == 0:  # the ephemeral card now shows the decision instead of buttons
        assert time.monotonic() < deadline, "the ephemeral card was not replaced"
        await asyncio.sleep(0.02)
    assert _button(eph.blocks, Action.APPROVE) is None and "Approved" in json.dumps(eph.blocks)
    eph, _ = await _command(sl, "show req_00000000000000000000000000")
    assert "no request with id" in eph.text


async def test_mine_lists_what_i_may_decide(sl: SlackLive) -> None:
    mine_direct = await sl.live.submit({"action": {"tool": "a", "args": {}}, "reviewers": [DANA]})
    mine_group = await sl.live.submit({"action": {"tool": "b", "args": {}}, "reviewers": ["S0FINANCE"]})
    anyone = await sl.live.submit({"action": {"tool": "c", "args": {}}})
    await sl.live.submit({"action": {"tool": "d", "args": {}}, "reviewers": [MALLORY]})
    await sl.live.submit({"action": {"tool": "e", "args": {}}, "reviewers": ["S0OTHER"]})
    eph, _ = await _command(sl, "mine")
    assert _listed(eph.blocks) == [anyone["id"], mine_group["id"], mine_direct["id"]]
    assert "Waiting for you" in json.dumps(eph.blocks)
    eph, _ = await _command(sl, "mine", user=MALLORY)
    assert len(_listed(eph.blocks)) == 2  # the one naming Mallory, and the one naming nobody
    eph, _ = await _command(sl, "mine tool:b")
    assert _listed(eph.blocks) == [mine_group["id"]]


async def test_stats_figures(sl: SlackLive) -> None:
    now = datetime.now(UTC)
    rows = []
    # Five decisions by people in the last day taking 60, 120, 180, 240 and 600 s; one policy decision, one
    # cancellation and one expiry that are no one's decision; two requests from three days ago.
    for n, (took, who, status, via) in enumerate([
        (60, DANA, "approved", "slack"), (120, DANA, "rejected", "slack"), (180, ERIN, "approved", "slack"),
        (240, DANA, "modified", "slack"), (600, ERIN, "approved", "api"), (5, "policy", "approved", "policy"),
        (30, "agent-1", "cancelled", "api"), (1800, "scheduler", "expired", "scheduler"),
    ]):
        created = now - timedelta(hours=2, minutes=n)
        rows.append(_row(created, tool="send_email" if n % 2 else "run_sql", status=status,
                         decided=(created + timedelta(seconds=took), who, via)))
    for n in range(2):
        rows.append(_row(now - timedelta(days=3, minutes=n), tool="deploy", status="pending"))
    async with sl.live.app.db.write() as s:
        await repo.insert_requests(s, rows=rows)
    eph, _ = await _command(sl, "stats")
    text = json.dumps(eph.blocks, ensure_ascii=False)
    day, week = (f["text"] for f in eph.blocks[1]["fields"])
    assert day.startswith("*Last 24 h*\n8 submitted\n") and week.startswith("*Last 7 days*\n10 submitted\n")
    assert "4 approved" in day and "1 expired" in day and "1 cancelled" in day
    assert "3 expired" in week  # the two from three days ago are past their one-hour deadline
    assert "5 decisions by people" in text
    assert "median *3 min*" in text and "p90 *7 min 36 s*" in text  # 180 s; 240 + 0.6 * 360 = 456 s
    assert text.index("1. `run_sql` — 4") < text.index("2. `send_email` — 4") < text.index("3. `deploy` — 2")
    assert f"<@{DANA}> — 3" in text and f"<@{ERIN}> — 2" in text


def _row(created: datetime, *, tool: str, status: str,
         decided: tuple[datetime, str, str] | None = None) -> dict[str, Any]:
    row: dict[str, Any] = dict(
        id=new_id("req_", created), status=status, tool=tool, args={}, final_args=None, context={}, agent="agent-1",
        risk="medium", channel=None, reviewers=[], required_approvals=1, version=1, created_at=created,
        expires_at=created + timedelta(hours=1), idempotency_key=None, body_hash=None, callback_url=None, rule=None,
        remind_at=None, escalate_at=None)
    if decided is not None:
        at, who, via = decided
        kind = {"approved": "approve", "rejected": "reject", "modified": "edit", "cancelled": "cancel",
                "expired": "expire"}[status]
        row.update(decided_at=at, decided_by_id=who, decided_by_name=who, decided_via=via, decision_kind=kind,
                   feedback="no" if status == "rejected" else None)
    return row


async def test_the_command_is_acked_before_the_reply_is_built(sl: SlackLive) -> None:
    await _submit_many(sl, 3)
    url = sl.slack.response_url(channel=CHANNEL, user=DANA)
    sl.slack.hang("response_url", 1.0)
    reply = await sl.send(slash_command(text="pending", user_id=DANA, channel_id=CHANNEL, response_url=url))
    assert reply.status == 200 and reply.text == ""  # the ack is empty; the list comes through response_url
    assert sl.slack.response_posts(url) == []
    await sl.slack.wait_for("response_url", 1)
    assert len(_listed(sl.slack.ephemerals(user=DANA)[-1].blocks)) == 3


# --- pure: parsing and rendering -------------------------------------------------------------------------------


def test_parse_commands_and_filters() -> None:
    assert parse("").name == "pending"
    assert parse("DRAFTS tool:x").filters == Filters(tool="x")
    assert parse("tool:x risk:HIGH").filters == Filters(tool="x", risk="high")
    assert parse("pending channel:<#C0DEPLOYS|deploys>").filters == Filters(channel="C0DEPLOYS")
    assert parse("show `REQ_01JD4X8K2M3N4P5Q6R7S8T9V0W`").request_id == "req_01jd4x8k2m3n4p5q6r7s8t9v0w"
    assert parse("mine label:escalation").filters == Filters(label="escalation")
    for bad, message in [("stats now", "takes no arguments"), ("pending tool:a tool:b", "given twice"),
                         ("pending tool:", "needs a value"), ("pending sendmail", "is not a filter"),
                         ("pending chanel:C1", "Did you mean `channel:`"), ("pending channel:general", "not a channel"),
                         ("show", "takes one request id")]:
        with pytest.raises(CommandError, match=message):
            parse(bad)


def test_page_reference_round_trips_and_refuses_garbage() -> None:
    ref = PageRef(parse("pending " + " ".join(f"{k}:{'x' * 128}" for k in ("label", "tool", "agent"))), 7,
                  before="req_01jd4x8k2m3n4p5q6r7s8t9v0w")
    value = encode_page(ref)
    assert len(value) <= 2000 and decode_page(value) == ref
    for garbage in ("", "{}", '{"q": "stats"}', '{"q": "pending", "b": "DROP TABLE"}'):
        with pytest.raises(CommandError):
            decode_page(garbage)


def test_a_page_of_huge_requests_stays_within_slack_limits() -> None:
    now = datetime.now(UTC)
    reqs = [{"id": new_id("req_", now), "status": "pending", "action": {"tool": "t" * 64, "args": {}},
             "agent": "a" * 128, "risk": "critical", "labels": [f"{i}" * 64 for i in range(32)],
             "context": {"summary": "<&>" * 4000}, "created_at": "2026-01-01T00:00:00Z",
             "expires_at": "2026-01-02T00:00:00Z",
             "slack": {"permalink": "https://x.slack.com/archives/C1/p1" + "9" * 2000}} for _ in range(10)]
    big = Filters(**{k: "f" * 128 for k in ("label", "tool", "agent")})
    page = PageResult(PageRef(Command("pending", big), 3, before=reqs[0]["id"]), reqs, 10_000, True, True, now)
    message = pending_reply(page)
    check_message_limits(message)
    assert len(message["blocks"]) <= 50
