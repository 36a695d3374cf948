"""Expiry, reminders, escalation and ``on_expiry: escalate`` with an injected clock: the sweeps are called
directly and the clock is moved, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from bot.domain import Actor
from bot.errors import AlreadyDecided
from bot.schedule_blocks import CARD_LINK
from bot.schedule_service import SLACK_MESSAGE
from tests.support.scheduling import CHANNEL, ESCALATE_CHANNEL, ONCALL, config, open_core

DANA = Actor("U0DANA", "Dana", "slack")


def _at(iso_text: str) -> datetime:
    return datetime.fromisoformat(iso_text.replace("Z", "+00:00"))


# --- expiry ---------------------------------------------------------------------------------------------


async def test_expires_at_its_deadline_and_queues_the_card_update(db_url: str) -> None:
    async with open_core(db_url) as core:
        req = await core.submit(timeout_s=60)
        core.clock.advance(59.999)
        assert await core.schedule.expire_due() == 0
        assert (await core.get(req["id"]))["status"] == "pending"

        core.clock.advance(0.001)
        assert await core.schedule.expire_due() == 1
        got = await core.get(req["id"])
        assert got["status"] == "expired"
        assert got["decision"]["by"]["via"] == "scheduler"
        assert got["decided_at"] == got["expires_at"]
        assert "expired" in await core.audit_kinds(req["id"])
        updates = await core.outbox("slack.update")
        assert [(u.request_id, u.payload["change"]) for u in updates] == [(req["id"], "expired")]
        assert await core.schedule.expire_due() == 0  # idempotent


async def test_a_waiting_agent_learns_of_the_expiry_from_the_sweep(db_url: str) -> None:
    async with open_core(db_url) as core:
        req = await core.submit(timeout_s=600)
        waiting = asyncio.create_task(core.service.wait(request_id=req["id"], timeout_s=60))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        core.clock.advance(600)  # the fake clock moves; the waiter's own 60 s timer (real time) has not run out
        assert await core.schedule.expire_due() == 1
        got = await asyncio.wait_for(waiting, timeout=10)
        assert got["status"] == "expired" and got["decision"]["by"]["via"] == "scheduler"


async def test_route_and_request_timeouts_override_the_default(db_url: str) -> None:
    cfg = config(timeouts={"default_s": 1800}, routes=[{"match": {"tool": "deploy*"}, "timeout_s": 300}])
    async with open_core(db_url, cfg) as core:
        default = await core.submit()
        routed = await core.submit(tool="deploy_api")
        own = await core.submit(tool="deploy_api", timeout_s=90)
        for req, seconds in ((default, 1800), (routed, 300), (own, 90)):
            assert _at(req["expires_at"]) - _at(req["created_at"]) == timedelta(seconds=seconds)
        core.clock.advance(300)
        assert await core.schedule.expire_due() == 2
        assert (await core.get(default["id"]))["status"] == "pending"


async def test_approve_racing_expiry_exactly_one_wins(db_url: str) -> None:
    """Concurrent approvals and sweeps: each request ends with exactly one decision, one terminal audit
    event and one card update; the loser of a race is told the request already expired."""
    async with open_core(db_url) as core:
        overdue = [await core.submit(timeout_s=60) for _ in range(6)]
        core.clock.advance(30)
        in_time = [await core.submit(timeout_s=60) for _ in range(6)]
        core.clock.advance(30)  # the first six are due now, the other six in 30 s

        async def approve(rid: str) -> str:
            try:
                return str((await core.service.decide(request_id=rid, kind="approve", actor=DANA))["status"])
            except AlreadyDecided as e:
                return f"lost: {e}"

        results = await asyncio.gather(
            *(approve(r["id"]) for r in overdue + in_time),
            core.schedule.expire_due(), core.schedule.expire_due(),
        )
        outcomes = results[:12]
        assert all(o.startswith("lost: This request already expired") for o in outcomes[:6]), outcomes
        assert outcomes[6:] == ["approved"] * 6
        updates = [u.request_id for u in await core.outbox("slack.update")]
        for req, status in [(r, "expired") for r in overdue] + [(r, "approved") for r in in_time]:
            assert (await core.get(req["id"]))["status"] == status
            kinds = await core.audit_kinds(req["id"])
            assert sum(k in ("expired", "approved") for k in kinds) == 1, kinds
            assert updates.count(req["id"]) == 1


async def test_a_late_approval_loses_to_the_deadline_even_before_the_sweep(db_url: str) -> None:
    async with open_core(db_url) as core:
        req = await core.submit(timeout_s=60)
        core.clock.advance(60)
        with pytest.raises(AlreadyDecided, match="already expired"):
            await core.service.decide(request_id=req["id"], kind="approve", actor=DANA)
        assert await core.schedule.expire_due() == 0
        assert (await core.get(req["id"]))["status"] == "expired"
        assert (await core.audit_kinds(req["id"])).count("expired") == 1


# --- reminders ------------------------------------------------------------------------------------------


async def test_one_reminder_mentions_the_reviewers_in_the_cards_thread(db_url: str) -> None:
    cfg = config(timeouts={"default_s": 7200, "remind_after_s": 600})
    async with open_core(db_url, cfg) as core:
        req = await core.submit(reviewers=["S0FINANCE", "U0ERIN"])
        core.clock.advance(599)
        assert await core.schedule.remind_due() == 0
        core.clock.advance(1)
        assert await core.schedule.remind_due() == 1
        (msg,) = await core.outbox(SLACK_MESSAGE)
        assert msg.key == f"remind:{req['id']}:1"
        assert msg.payload["thread_of"] == req["id"]
        assert msg.payload["channel"] == CHANNEL
        text = msg.payload["blocks"][0]["text"]["text"]
        assert "<!subteam^S0FINANCE>" in text and "<@U0ERIN>" in text and "Reminder" in text
        core.clock.advance(3600)
        assert await core.schedule.remind_due() == 0  # once only
        assert (await core.audit_kinds(req["id"])).count("reminded") == 1


async def test_repeated_reminders_up_to_the_limit_without_a_burst_after_downtime(db_url: str) -> None:
    cfg = config(timeouts={"default_s": 7200, "remind_after_s": 600, "remind_every_s": 300, "remind_max": 4})
    async with open_core(db_url, cfg) as core:
        req = await core.submit()
        sent = []
        for step in (600, 299, 1, 1000, 299, 1, 3000):  # t = 600, 899, 900, 1900, 2199, 2200, 5200
            core.clock.advance(step)
            sent.append(await core.schedule.remind_due())
        # 600: first; 900: second; 1900 (after "downtime"): one, not three; 2200: the fourth and last
        assert sent == [1, 0, 1, 1, 0, 1, 0]
        keys = await core.outbox_keys(SLACK_MESSAGE)
        assert keys == [f"remind:{req['id']}:{n}" for n in (1, 2, 3, 4)]
        last = (await core.outbox(SLACK_MESSAGE))[-1]
        assert "(4 of 4)" in last.payload["blocks"][0]["text"]["text"]


async def test_a_route_sets_its_own_reminders_and_decided_requests_get_none(db_url: str) -> None:
    cfg = config(timeouts={"default_s": 7200, "remind_after_s": 1200},
                 routes=[{"match": {"tool": "refund"}, "remind_after_s": 60}])
    async with open_core(db_url, cfg) as core:
        routed = await core.submit(tool="refund")
        decided = await core.submit(tool="refund")
        plain = await core.submit()
        await core.service.decide(request_id=decided["id"], kind="approve", actor=DANA)
        core.clock.advance(60)
        assert await core.schedule.remind_due() == 1
        assert await core.outbox_keys(SLACK_MESSAGE) == [f"remind:{routed['id']}:1"]
        core.clock.advance(1140)
        assert await core.schedule.remind_due() == 1
        assert (await core.outbox_keys(SLACK_MESSAGE))[-1] == f"remind:{plain['id']}:1"


async def test_without_slack_reminders_are_recorded_but_nothing_is_queued(db_url: str) -> None:
    cfg = config(timeouts={"default_s": 7200, "remind_after_s": 60, "escalate_after_s": 120})
    async with open_core(db_url, cfg, slack=False) as core:
        req = await core.submit()
        core.clock.advance(120)
        assert await core.schedule.remind_due() == 1
        assert await core.schedule.escalate_due() == 1
        assert await core.outbox(SLACK_MESSAGE) == []
        assert "escalation" in (await core.get(req["id"]))["labels"]
        assert {"reminded", "escalated"} <= set(await core.audit_kinds(req["id"]))


# --- escalation -----------------------------------------------------------------------------------------


async def test_escalation_labels_posts_to_the_escalation_channel_and_replies_in_the_thread(db_url: str) -> None:
    cfg = config(timeouts={"default_s": 7200, "escalate_after_s": 1200})
    async with open_core(db_url, cfg) as core:
        req = await core.submit(context={"summary": "Refund order #1234"})
        core.clock.advance(1199)
        assert await core.schedule.escalate_due() == 0
        core.clock.advance(1)
        assert await core.schedule.escalate_due() == 1
        assert await core.schedule.escalate_due() == 0

        got = await core.get(req["id"])
        assert got["status"] == "pending" and "escalation" in got["labels"]
        messages = {m.key: m.payload for m in await core.outbox(SLACK_MESSAGE)}
        post = messages[f"escalate:{req['id']}:post"]
        assert post["channel"] == ESCALATE_CHANNEL and post["thread_of"] is None
        assert post["link_card"] == req["id"]
        body = post["blocks"][0]["text"]["text"]
        assert f"<{CARD_LINK}|Open the card>" in body and f"<!subteam^{ONCALL}>" in body
        assert "Refund order #1234" in body and "20 min" in body
        reply = messages[f"escalate:{req['id']}:thread"]
        assert reply["thread_of"] == req["id"]
        assert f"<#{ESCALATE_CHANNEL}>" in reply["blocks"][0]["text"]["text"]
        assert [u.payload["change"] for u in await core.outbox("slack.update")] == ["escalated"]
        assert (await core.audit_kinds(req["id"])).count("escalated") == 1


# --- on_expiry: escalate ----------------------------------------------------------------------------------


async def test_on_expiry_escalate_extends_once_then_expires(db_url: str) -> None:
    cfg = config(routes=[{"match": {"tool": "deploy*"}, "timeout_s": 600, "on_expiry": "escalate"}])
    async with open_core(db_url, cfg) as core:
        req = await core.submit(tool="deploy_api")
        plain = await core.submit(timeout_s=600)
        created = _at(req["created_at"])
        core.clock.advance(590)
        assert await core.schedule.expire_due() == 0
        assert await core.schedule.extend_due() == 0

        core.clock.advance(10)  # the first deadline: escalated and extended instead of expired
        assert await core.schedule.expire_due() == 1
        assert (await core.get(plain["id"]))["status"] == "expired"
        got = await core.get(req["id"])
        assert got["status"] == "pending"
        assert _at(got["expires_at"]) == created + timedelta(seconds=1200)
        assert "escalation" in got["labels"]
        keys = await core.outbox_keys(SLACK_MESSAGE)
        assert f"escalate:{req['id']}:post" in keys and f"escalate:{req['id']}:thread" in keys
        kinds = await core.audit_kinds(req["id"])
        assert kinds.count("extended") == 1 and kinds.count("escalated") == 1

        core.clock.advance(599)
        assert await core.schedule.expire_due() == 0
        core.clock.advance(1)  # the second deadline: expires normally
        assert await core.schedule.expire_due() == 1
        assert (await core.get(req["id"]))["status"] == "expired"
        assert (await core.audit_kinds(req["id"])).count("extended") == 1


async def test_on_expiry_escalate_acts_just_before_the_deadline_so_no_read_sees_it_expired(db_url: str) -> None:
    cfg = config(routes=[{"match": {"tool": "deploy*"}, "timeout_s": 600, "on_expiry": "escalate"}])
    async with open_core(db_url, cfg) as core:
        req = await core.submit(tool="deploy_api")
        core.clock.advance(598)  # within the lead of the sweep
        await core.schedule.expire_due()
        core.clock.advance(2)
        assert (await core.get(req["id"]))["status"] == "pending"


async def test_an_already_escalated_request_gets_its_extension_and_a_thread_note(db_url: str) -> None:
    cfg = config(routes=[{"match": {"tool": "deploy*"}, "timeout_s": 600, "on_expiry": "escalate",
                          "escalate_after_s": 100},
                         {"match": {"tool": "ship*"}, "timeout_s": 600, "on_expiry": "escalate"}])
    async with open_core(db_url, cfg) as core:
        req = await core.submit(tool="deploy_api")
        other = await core.submit(tool="ship_it")  # reaches the same deadline in the same sweep, not escalated
        core.clock.advance(100)
        assert await core.schedule.escalate_due() == 1
        core.clock.advance(500)
        assert await core.schedule.expire_due() == 0
        keys = await core.outbox_keys(SLACK_MESSAGE)
        assert keys.count(f"escalate:{req['id']}:post") == 1  # not escalated twice
        assert f"extend:{req['id']}" in keys
        assert f"escalate:{other['id']}:post" in keys and f"extend:{other['id']}" not in keys
        for r in (req, other):
            got = await core.get(r["id"])
            assert got["status"] == "pending" and got["expires_at"].startswith("2026-01-05T09:20:00")


async def test_on_expiry_escalate_after_long_downtime_just_expires(db_url: str) -> None:
    cfg = config(routes=[{"match": {"tool": "deploy*"}, "timeout_s": 600, "on_expiry": "escalate"}])
    async with open_core(db_url, cfg) as core:
        req = await core.submit(tool="deploy_api")
        core.clock.advance(5000)  # both the deadline and the extended one passed while down
        assert await core.schedule.expire_due() == 1
        assert (await core.get(req["id"]))["status"] == "expired"
        assert await core.outbox(SLACK_MESSAGE) == []
