"""Digests: grouping and content, Block Kit limits, one send per period, cron periods across the 2026 DST
changes in Europe/Berlin, and the configuration checks for digests, reminders and escalation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.blocks_limits import check_message_limits
from bot.clock import FakeClock
from bot.config import load_config, parse_config
from bot.cron import crontab, fire_times, interval, interval_period, zone
from bot.digest_blocks import DigestGroup, digest_message
from bot.domain import Actor
from bot.errors import ConfigError
from bot.schedule_service import SLACK_MESSAGE
from storage import repository as repo
from tests.support.scheduling import config, open_core

DIGEST = {"name": "morning", "channel": "C0ESCALATE", "labels": ["escalation", "needs-human-review"],
          "cron": "0 9 * * 1-5", "timezone": "Europe/Berlin"}


def _texts(blocks: list[dict[str, Any]]) -> str:
    out = []
    for b in blocks:
        if b["type"] in ("section", "header"):
            out.append(b["text"]["text"])
        elif b["type"] == "context":
            out += [e["text"] for e in b["elements"]]
    return "\n".join(out)


# --- content --------------------------------------------------------------------------------------------


async def test_digest_groups_pending_requests_by_label_oldest_first(db_url: str) -> None:
    async with open_core(db_url, config(digests=[DIGEST], timeouts={"default_s": 86400})) as core:
        old = await core.submit(tool="issue_refund", agent="billing-bot", labels=["escalation"],
                                context={"summary": "Refund <b>order</b> & co"})
        core.clock.advance(600)
        both = await core.submit(tool="deploy_api", labels=["escalation", "needs-human-review"])
        core.clock.advance(60)
        review = await core.submit(tool="run_sql", labels=["needs-human-review"])
        await core.submit(tool="other_label", labels=["fyi"])
        decided = await core.submit(tool="decided_one", labels=["escalation"])
        await core.service.decide(request_id=decided["id"], kind="reject", feedback="no",
                                  actor=Actor("U0DANA", "Dana", "cli"))
        core.clock.advance(3600)

        out = await core.schedule.send_digest(name="morning", period="p1")
        assert out.ran and out.queued and out.pending == 3
        (row,) = await core.outbox(SLACK_MESSAGE)
        assert row.key == "digest:morning:p1"
        assert row.payload["channel"] == "C0ESCALATE" and row.payload["thread_of"] is None
        check_message_limits(row.payload)
        text = _texts(row.payload["blocks"])
        assert "*3* pending requests" in text
        esc, nhr = text.index("*`escalation`* — 2 pending"), text.index("*`needs-human-review`* — 2 pending")
        assert esc < nhr
        # oldest first within a group; the request with both labels is under both
        assert esc < text.index("issue_refund") < text.index("deploy_api") < nhr
        assert nhr < text.index("deploy_api", nhr) < text.index("run_sql")
        assert "other_label" not in text and "decided_one" not in text
        assert "`billing-bot`" in text and "waiting 1 h 11 min" in text  # agent and age
        assert "Refund &lt;b&gt;order&lt;/b&gt; &amp; co" in text  # summary, escaped
        for req in (old, both, review):  # no card posted yet: the id instead of a link
            assert f"`{req['id']}`" in text


async def test_digest_links_each_card_and_ends_long_lists_with_and_n_more(db_url: str) -> None:
    async with open_core(db_url, config(digests=[DIGEST])) as core:
        ids = []
        for i in range(13):
            req = await core.submit(labels=["escalation"], context={"summary": f"number {i:02d}"})
            ids.append(req["id"])
            await core.service.set_slack_message(request_id=req["id"], channel="C0APPROVALS", ts=f"1.{i}",
                                                 permalink=f"https://t.slack.com/archives/C0APPROVALS/p{i}")
            core.clock.advance(1)
        out = await core.schedule.send_digest(name="morning", period="p1")
        assert out.pending == 13
        (row,) = await core.outbox(SLACK_MESSAGE)
        check_message_limits(row.payload)
        text = _texts(row.payload["blocks"])
        assert "<https://t.slack.com/archives/C0APPROVALS/p0|*send_email*>" in text
        assert "number 09" in text and "number 10" not in text  # the ten oldest
        assert "…and 3 more: `/signoff pending label:escalation`" in text
        assert "Nothing pending under `needs-human-review`." in text


def test_a_huge_digest_stays_within_block_kit_limits() -> None:
    now = datetime(2026, 1, 5, 9, tzinfo=UTC)

    def req(i: int) -> dict[str, Any]:
        return {"id": f"req_{i}", "action": {"tool": "t" * 64}, "agent": "a" * 128,
                "created_at": (now - timedelta(minutes=i)).isoformat(), "context": {"summary": "<&>" * 2000},
                "slack": {"permalink": "https://t.slack.com/archives/C1/p" + "9" * 200}}

    groups = [DigestGroup(f"label-{j}-" + "x" * 50, [req(i) for i in range(10)], 40) for j in range(30)]
    message = digest_message(name="n" * 64, groups=groups, distinct_total=1200, now=now)
    check_message_limits(message)
    assert len(message["blocks"]) <= 50
    text = _texts(message["blocks"])
    assert "…and 30 more: `/signoff pending label:label-0-" in text
    assert "more label(s): `/signoff pending label:" in text  # the groups that did not fit


async def test_nothing_pending_sends_nothing_unless_post_when_empty(db_url: str) -> None:
    quiet = {**DIGEST, "name": "quiet"}
    loud = {**DIGEST, "name": "loud", "post_when_empty": True}
    async with open_core(db_url, config(digests=[quiet, loud])) as core:
        await core.submit(labels=["fyi"])
        assert (await core.schedule.send_digest(name="quiet", period="p1")).queued is False
        assert (await core.schedule.send_digest(name="loud", period="p1")).queued is True
        (row,) = await core.outbox(SLACK_MESSAGE)
        assert row.key == "digest:loud:p1"
        assert "Nothing is waiting under these labels" in _texts(row.payload["blocks"])
        async with core.db.read() as s:
            runs = {(r.name, r.period, r.posted) for r in await repo.digest_runs(s)}
        assert runs == {("quiet", "p1", False), ("loud", "p1", True)}


async def test_each_period_is_sent_once(db_url: str) -> None:
    async with open_core(db_url, config(digests=[{**DIGEST, "post_when_empty": True}])) as core:
        first = await core.schedule.send_digest(name="morning", period="2026-01-05T09:00")
        again = await core.schedule.send_digest(name="morning", period="2026-01-05T09:00")
        other = await core.schedule.send_digest(name="morning", period="2026-01-06T09:00")
        assert (first.ran, again.ran, other.ran) == (True, False, True)
        assert await core.outbox_keys(SLACK_MESSAGE) == ["digest:morning:2026-01-05T09:00",
                                                         "digest:morning:2026-01-06T09:00"]


# --- schedules --------------------------------------------------------------------------------------------


def test_berlin_cron_fires_at_the_right_utc_instants_across_both_2026_dst_changes() -> None:
    nine = crontab("0 9 * * *", "Europe/Berlin")
    spring = fire_times(nine, datetime(2026, 3, 27, tzinfo=UTC), 4)
    assert [t.strftime("%m-%d %H:%M") for t in spring] == ["03-27 08:00", "03-28 08:00", "03-29 07:00",
                                                          "03-30 07:00"]
    autumn = fire_times(nine, datetime(2026, 10, 24, tzinfo=UTC), 3)
    assert [t.strftime("%m-%d %H:%M") for t in autumn] == ["10-24 07:00", "10-25 08:00", "10-26 08:00"]
    weekdays = crontab("0 9 * * 1-5", "Europe/Berlin")  # Fri 27 Mar, then Mon 30 Mar (after the change)
    assert fire_times(weekdays, datetime(2026, 3, 27, tzinfo=UTC), 2) == [
        datetime(2026, 3, 27, 8, tzinfo=UTC), datetime(2026, 3, 30, 7, tzinfo=UTC)]


@pytest.mark.parametrize(("expr", "days"), [
    ("0 9 * * 0", ["2026-03-29"]),                    # cron's 0 is Sunday (APScheduler 3's would be Monday)
    ("0 9 * * 7", ["2026-03-29"]),
    ("0 9 * * 1-5", ["2026-03-30", "2026-03-31", "2026-04-01", "2026-04-02", "2026-04-03"]),
    ("0 9 * * sat,sun", ["2026-03-28", "2026-03-29", "2026-04-04"]),
    ("0 9 * * */3", ["2026-03-28", "2026-03-29", "2026-04-01"]),  # Sun, Wed, Sat
    ("0 9 1 * 1", ["2026-03-30", "2026-04-01", "2026-04-06"]),   # the 1st OR a Monday, as cron reads it
])
def test_crontab_days_mean_what_they_mean_to_cron(expr: str, days: list[str]) -> None:
    start = datetime(2026, 3, 28, tzinfo=UTC)
    got = [t.astimezone(zone("Europe/Berlin")) for t in fire_times(crontab(expr, "Europe/Berlin"), start, 12)]
    until = datetime(2026, 4, 7, tzinfo=UTC)
    assert [t.strftime("%Y-%m-%d") for t in got if t < until][: len(days)] == days
    assert all(t.hour == 9 for t in got)


async def test_scheduled_digest_periods_follow_berlin_wall_clock_time(db_url: str) -> None:
    digests = [{**DIGEST, "name": "nine", "cron": "0 9 * * *", "post_when_empty": True},
               {**DIGEST, "name": "night", "cron": "30 2 * * *", "post_when_empty": True}]
    clock = FakeClock(datetime(2026, 3, 28, 8, 0, 0, 5000, tzinfo=UTC))
    async with open_core(db_url, config(digests=digests), clock=clock) as core:
        sent = []
        # 09:00 CET and 09:00 CEST the next day, each just after its UTC fire instant
        for when in (datetime(2026, 3, 28, 8, 0, 0, 5000, tzinfo=UTC), datetime(2026, 3, 29, 7, 0, 1, tzinfo=UTC)):
            clock.set(when)
            out = await core.schedule.run_scheduled_digest("nine")
            assert out is not None
            sent.append(out.period)
        assert sent == ["2026-03-28T09:00", "2026-03-29T09:00"]
        clock.set(datetime(2026, 3, 29, 12, tzinfo=UTC))
        assert await core.schedule.run_scheduled_digest("nine") is None  # no fire time in the last minutes

        # 02:30 happens twice on 25 Oct 2026 (00:30 and 01:30 UTC): the digest goes out once
        clock.set(datetime(2026, 10, 25, 0, 30, 2, tzinfo=UTC))
        first = await core.schedule.run_scheduled_digest("night")
        clock.set(datetime(2026, 10, 25, 1, 30, 2, tzinfo=UTC))
        second = await core.schedule.run_scheduled_digest("night")
        assert first is not None and second is not None
        assert (first.period, first.ran) == ("2026-10-25T02:30", True)
        assert (second.period, second.ran) == ("2026-10-25T02:30", False)


def test_interval_digests_fire_at_epoch_aligned_instants_on_every_replica() -> None:
    every = interval(3600)
    starts = [datetime(2026, 1, 5, 9, 17, tzinfo=UTC), datetime(2026, 1, 5, 9, 42, 13, tzinfo=UTC)]
    assert {fire_times(every, s, 1)[0] for s in starts} == {datetime(2026, 1, 5, 10, tzinfo=UTC)}
    assert interval_period(3600, datetime(2026, 1, 5, 10, 0, 0, tzinfo=UTC)) == \
        interval_period(3600, datetime(2026, 1, 5, 10, 59, 59, tzinfo=UTC)) != \
        interval_period(3600, datetime(2026, 1, 5, 11, 0, 0, tzinfo=UTC))


# --- configuration ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "problem"), [
    ({"digests": [{**DIGEST, "cron": "61 9 * * *"}]},
     "signoff.yml: digests.0.cron: bad cron expression '61 9 * * *'"),
    ({"digests": [{**DIGEST, "cron": "0 9 * *"}]}, "digests.0.cron: bad cron expression '0 9 * *': expected 5"),
    ({"digests": [{**DIGEST, "cron": "0 9 * * 8"}]}, "'8' is not a day of week"),
    ({"digests": [{**DIGEST, "timezone": "Europe/Berlinn"}]}, "digests.0.timezone: unknown time zone 'Europe/Berlinn'"),
    ({"digests": [{**DIGEST, "interval_s": 60}]}, "digests.0: give exactly one of 'cron' or 'interval_s'"),
    ({"digests": [{**DIGEST, "interval_s": 0, "cron": None}]}, "digests.0.interval_s: Input should be greater"),
    ({"digests": [{**DIGEST, "every": 5}]}, "digests.0.every: unknown key"),
    ({"digests": [{**DIGEST, "labels": []}]}, "digests.0.labels: List should have at least 1 item"),
    ({"digests": [{**DIGEST, "name": "two words"}]}, "digests.0.name: String should match pattern"),
    ({"digests": [DIGEST, DIGEST]}, "digest names must be unique; repeated: morning"),
    ({"routes": [{"on_expiry": "ignore"}]}, "routes.0.on_expiry: Input should be 'reject' or 'escalate'"),
    ({"routes": [{"remind_afterr_s": 5}]}, "routes.0.remind_afterr_s: unknown key"),
    ({"routes": [{"remind_every_s": 60}]}, "routes.0: remind_every_s needs remind_after_s"),
    ({"timeouts": {"remind_every_s": 60}}, "timeouts: remind_every_s needs remind_after_s"),
    ({"timeouts": {"remind_after_s": 60, "remind_max": 3}}, "timeouts: remind_max: 3 reminders need remind_every_s"),
    ({"timeouts": {"escalate_after_s": 0}}, "timeouts.escalate_after_s: Input should be greater than or equal to 1"),
    ({"escalation": {"channel": "escalations"}}, "escalation.channel: 'escalations' is not a Slack channel id"),
    ({"escalation": {"mention": ["oncall"]}}, "escalation.mention: 'oncall' is not a Slack user"),
])
def test_bad_scheduler_settings_are_refused_naming_the_key(raw: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(raw, source="signoff.yml")
    assert problem in err.value.message


def test_a_bad_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "signoff.yml"
    path.write_text("digests:\n  - name: morning\n    channel: C0ESCALATE\n    labels: [escalation]\n"
                    "    cron: '0 9 * * 1-5'\n    timezone: Mars/Olympus\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.message.startswith(f"{path}: digests.0.timezone: unknown time zone 'Mars/Olympus'")


def test_a_good_file_with_every_scheduler_setting_loads() -> None:
    cfg = parse_config({
        "timeouts": {"default_s": 1800, "remind_after_s": 600, "remind_every_s": 300, "remind_max": 3,
                     "escalate_after_s": 1200},
        "escalation": {"channel": "C0ESCALATE", "mention": ["S0ONCALL"], "label": "escalation"},
        "routes": [{"match": {"tool": "deploy*"}, "timeout_s": 600, "on_expiry": "escalate", "remind_after_s": 60}],
        "digests": [DIGEST, {**DIGEST, "name": "hourly", "cron": None, "interval_s": 3600}],
    })
    assert cfg.routes[0].on_expiry == "escalate" and cfg.digests[1].interval_s == 3600
