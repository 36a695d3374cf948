"""The scheduler in running apps against the fake Slack Web API: messages as Slack receives them, expiry
after downtime, and two replicas on one PostgreSQL sending every reminder, escalation, digest and expiry
update exactly once. The apps' schedulers run for real; the clock they read runs at real speed (outbox pacing
waits real seconds) and the test jumps it over minutes."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bot.app import SignoffApp, Tuning
from bot.config import Config
from bot.jobs import DIGEST_JOB_PREFIX
from bot.schedule_blocks import CARD_LINK
from bot.schemas import SubmitBody
from bot.settings import Secret
from storage import repository as repo
from tests.conftest import make_settings
from tests.support.fakeslack import Call, FakeSlack
from tests.support.polling import until
from tests.support.scheduling import ESCALATE_CHANNEL, ONCALL, JumpClock, config
from tests.support.slack_requests import SIGNING_SECRET

DIGEST_CHANNEL = "C0DIGEST"
FAST = Tuning(expire_every_s=0.2, nudge_every_s=0.2, outbox_poll_s=0.05, outbox_base_delay_s=0.05)


@asynccontextmanager
async def running(db_url: str, slack: FakeSlack, cfg: Config, clock: JumpClock) -> AsyncIterator[SignoffApp]:
    settings = make_settings(db_url, slack_bot_token=Secret(slack.token),
                             slack_signing_secret=Secret(SIGNING_SECRET), slack_api_url=slack.api_url)
    app = SignoffApp(settings, config=cfg, clock=clock, tuning=FAST)
    # Outbox leases run on the app's clock; the tests jump it by minutes, which would end a lease while its
    # delivery is in flight and let the other replica deliver the row again. Leases outlast the jumps.
    app.outbox.lease_s = 86400.0
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def submit(app: SignoffApp, **fields: Any) -> dict[str, Any]:
    body = SubmitBody.model_validate({"action": {"tool": "send_email", "args": {"to": "a@example.com"}}, **fields})
    return (await app.service.submit(agent="agent-1", body=body)).request


async def recorded(app: SignoffApp, ids: list[str]) -> None:
    """Wait until every card's ts is stored (stopping before that would post a card again on restart)."""
    async def check() -> bool:
        return all([(await app.service.get(request_id=i)).get("slack") for i in ids])

    for _ in range(200):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("cards not recorded")


def posts(slack: FakeSlack, channel: str, *, thread: bool | None = None) -> list[Call]:
    return [c for c in slack.calls("chat.postMessage", ok=True) if c.params.get("channel") == channel
            and (thread is None or bool(c.params.get("thread_ts")) == thread)]


def card_ts(slack: FakeSlack) -> dict[str, str]:
    """request id → the ts of its card (the first top-level post naming it)."""
    out: dict[str, str] = {}
    for c in slack.calls("chat.postMessage", ok=True):
        if c.params.get("thread_ts"):
            continue
        for rid in _ids(c):
            out.setdefault(rid, c.response["ts"])
    return out


def _ids(call: Call) -> list[str]:
    import re

    return sorted(set(re.findall(r"req_[0-9a-z]{26}", str(call.params.get("blocks")) + str(call.params.get("text")))))


async def test_reminders_escalations_and_digests_reach_slack_as_thread_replies_and_posts(sqlite_url: str) -> None:
    cfg = config(timeouts={"default_s": 3600, "remind_after_s": 60, "escalate_after_s": 120},
                 digests=[{"name": "esc", "channel": DIGEST_CHANNEL, "labels": ["escalation"], "interval_s": 3600}])
    clock = JumpClock()
    async with FakeSlack(post_rate=None) as slack, running(sqlite_url, slack, cfg, clock) as app:
        req = await submit(app, channel="C0CARDS", reviewers=["S0REVIEWERS", "U0DANA"],
                           context={"summary": "Refund order 1234"})
        await until(lambda: req["id"] in card_ts(slack), "the card", timeout=20.0)
        ts = card_ts(slack)[req["id"]]

        clock.advance(60)
        await until(lambda: len(posts(slack, "C0CARDS", thread=True)) == 1, "the reminder", timeout=20.0)
        (reminder,) = posts(slack, "C0CARDS", thread=True)
        assert reminder.params["thread_ts"] == ts
        assert "<!subteam^S0REVIEWERS>" in reminder.params["blocks"][0]["text"]["text"]
        assert "<@U0DANA>" in reminder.params["blocks"][0]["text"]["text"]

        clock.advance(60)
        await until(lambda: len(posts(slack, ESCALATE_CHANNEL)) == 1
                    and len(posts(slack, "C0CARDS", thread=True)) == 2, "the escalation", timeout=20.0)
        (notice,) = posts(slack, ESCALATE_CHANNEL)
        body = notice.params["blocks"][0]["text"]["text"]
        permalink = app.service and (await app.service.get(request_id=req["id"]))["slack"]["permalink"]
        assert permalink and f"<{permalink}|Open the card>" in body and CARD_LINK not in body
        assert f"<!subteam^{ONCALL}>" in body and "Refund order 1234" in body
        reply = posts(slack, "C0CARDS", thread=True)[-1]
        assert reply.params["thread_ts"] == ts and "Escalated" in reply.params["blocks"][0]["text"]["text"]
        await until(lambda: len(slack.calls("chat.update", ok=True)) == 1, "the card update", timeout=20.0)
        assert "escalation" in str(slack.message("C0CARDS", ts).blocks)

        clock.advance(1)  # any time in the next hour's slot, after the hourly fire in real time: send now
        out = await app.schedule.send_digest_now("esc")
        assert out.queued
        await until(lambda: len(posts(slack, DIGEST_CHANNEL)) == 1, "the digest", timeout=20.0)
        digest = str(posts(slack, DIGEST_CHANNEL)[0].params["blocks"])
        assert f"<{permalink}|*send_email*>" in digest
        slack.assert_no_breaches()


async def test_after_downtime_every_overdue_request_is_expired_at_start(db_url: str) -> None:
    cfg = config()
    clock = JumpClock()
    async with FakeSlack(post_rate=None) as slack:
        async with running(db_url, slack, cfg, clock) as app:
            reqs = [await submit(app, channel=f"C0DOWN{i}", timeout_s=600) for i in range(4)]
            await until(lambda: len(card_ts(slack)) == 4, "the cards", timeout=20.0)
            await recorded(app, [r["id"] for r in reqs])
        clock.advance(3600)  # the server was down past every deadline
        async with running(db_url, slack, cfg, clock) as app:
            async with app.db.read() as s:  # the rows themselves, as soon as start() returned
                statuses = [(await repo.get_request(s, request_id=r["id"])).status for r in reqs]  # type: ignore[union-attr]
            assert statuses == ["expired"] * 4
            await until(lambda: len(slack.calls("chat.update", ok=True)) == 4, "the card updates", timeout=20.0)
            updated = Counter(c.params["ts"] for c in slack.calls("chat.update", ok=True))
            assert updated == Counter(card_ts(slack).values())
        slack.assert_no_breaches()


async def test_two_replicas_send_each_reminder_escalation_digest_and_expiry_update_once(pg_url: str) -> None:
    cfg = config(timeouts={"default_s": 300, "remind_after_s": 60, "remind_every_s": 60, "remind_max": 2,
                           "escalate_after_s": 120},
                 digests=[{"name": "esc", "channel": DIGEST_CHANNEL, "labels": ["escalation"], "interval_s": 1,
                           "post_when_empty": True}])
    clock = JumpClock()
    channels = ["C0REPA", "C0REPB", "C0REPC"]
    async with FakeSlack(post_rate=None) as slack, running(pg_url, slack, cfg, clock) as one, \
            running(pg_url, slack, cfg, clock) as two:
        reqs = [await (one if i % 2 else two).service.submit(agent="agent-1", body=SubmitBody.model_validate(
            {"action": {"tool": "deploy", "args": {"n": i}}, "channel": ch})) for i, ch in enumerate(channels)]
        ids = [r.request["id"] for r in reqs]
        await until(lambda: set(card_ts(slack)) >= set(ids), "the cards", timeout=20.0)

        def replies() -> int:
            return sum(len(posts(slack, ch, thread=True)) for ch in channels)

        for step, wanted in ((60, lambda: replies() == 3),
                             (60, lambda: replies() == 9 and len(posts(slack, ESCALATE_CHANNEL)) == 3),
                             (180, lambda: len(slack.calls("chat.update", ok=True)) == 6)):
            clock.advance(step)
            await until(wanted, f"the work due at +{step}", timeout=20.0)
        await asyncio.sleep(1.5)  # let both replicas run every sweep and digest job a few more times
        for app in (one, two):  # then stop digesting, so the count below cannot move while it is checked
            app._scheduler.remove_job(DIGEST_JOB_PREFIX + "esc")
        await asyncio.sleep(0.3)

        async def digest_rows() -> list[Any]:
            async with one.db.read() as s:
                return [o for o in await repo.get_outbox(s, kind="slack.message") if o.key.startswith("digest:")]

        for _ in range(100):  # paced at about one a second per channel and replica: wait for the last ones
            if all(o.delivered_at is not None for o in await digest_rows()):
                break
            await asyncio.sleep(0.1)

        # Both replicas fire the digest every second; each period is recorded and posted once.
        async with one.db.read() as s:
            runs = await repo.digest_runs(s, name="esc")
        rows = await digest_rows()
        assert len(runs) >= 4
        assert len({r.period for r in runs}) == len(runs)
        assert all(r.posted for r in runs)
        assert sorted(o.key for o in rows) == sorted(f"digest:esc:{r.period}" for r in runs)
        assert all(o.delivered_at is not None for o in rows)
        assert len(posts(slack, DIGEST_CHANNEL)) == len(runs)
        cards = card_ts(slack)
        assert len([c for c in slack.calls("chat.postMessage", ok=True)
                    if c.params["channel"] in channels and not c.params.get("thread_ts")]) == 3
        per_card = Counter(c.params["thread_ts"] for ch in channels for c in posts(slack, ch, thread=True))
        assert per_card == Counter({cards[i]: 3 for i in ids})  # 2 reminders + 1 escalation reply each
        assert sorted(r for c in posts(slack, ESCALATE_CHANNEL) for r in _ids(c)) == sorted(ids)
        updates = Counter(c.params["ts"] for c in slack.calls("chat.update", ok=True))
        assert updates == Counter({cards[i]: 2 for i in ids})  # escalated, then expired: once each
        for i in ids:
            assert (await one.service.get(request_id=i))["status"] == "expired"
        slack.assert_no_breaches()
