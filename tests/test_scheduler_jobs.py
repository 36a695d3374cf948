"""The scheduler's jobs (fixed ids, one instance, coalesced) and ``signoff digest run``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.app import build_core, build_schedule
from bot.cli import main
from bot.clock import FakeClock
from bot.jobs import DIGEST_JOB_PREFIX, ESCALATE_JOB, EXPIRE_JOB, REMIND_JOB, build_scheduler
from storage import repository as repo
from tests.conftest import make_settings
from tests.support.fakeslack import FakeSlack
from tests.support.scheduling import config, open_core
from tests.support.slack_requests import SIGNING_SECRET

CONFIG = """
slack: {default_channel: C0APPROVALS}
reviewers: [S0REVIEWERS]
timeouts: {default_s: 86400}
digests:
  - {name: morning, channel: C0DIGEST, labels: [escalation], cron: "0 9 * * 1-5", timezone: Europe/Berlin}
  - {name: hourly, channel: C0DIGEST, labels: [needs-human-review], interval_s: 3600}
"""


async def test_every_sweep_and_digest_is_a_job_with_a_fixed_id_that_never_overlaps_itself(sqlite_url: str) -> None:
    cfg = config(digests=[{"name": "morning", "channel": "C0DIGEST", "labels": ["escalation"],
                           "cron": "0 9 * * 1-5", "timezone": "Europe/Berlin"}])
    db, service, _t, _m = build_core(make_settings(sqlite_url), config=cfg, clock=FakeClock())
    scheduler = build_scheduler(schedule=build_schedule(make_settings(sqlite_url), service), expire_every_s=1.0)
    scheduler.start(paused=True)  # the job defaults apply when the scheduler starts
    try:
        jobs = {job.id: job for job in scheduler.get_jobs()}
    finally:
        scheduler.shutdown(wait=False)
        await db.close()
    assert set(jobs) == {EXPIRE_JOB, REMIND_JOB, ESCALATE_JOB, DIGEST_JOB_PREFIX + "morning"}
    assert all(job.coalesce and job.max_instances == 1 for job in jobs.values())
    assert jobs[EXPIRE_JOB].trigger.interval.total_seconds() == 1.0
    # Monday 30 March 2026 09:00 in Berlin (just after the change to summer time) is 07:00 UTC
    digest = jobs[DIGEST_JOB_PREFIX + "morning"].trigger
    nxt = digest.get_next_fire_time(None, datetime(2026, 3, 28, tzinfo=UTC))
    assert nxt.astimezone(UTC) == datetime(2026, 3, 30, 7, tzinfo=UTC)


def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> None:
    path = tmp_path / "signoff.yml"
    path.write_text(CONFIG, encoding="utf-8")
    monkeypatch.setenv("SIGNOFF_DATABASE_URL", db_url)
    monkeypatch.setenv("SIGNOFF_CONFIG", str(path))
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "SLACK_API_URL"):
        monkeypatch.delenv(name, raising=False)


async def _seed(db_url: str, tmp_path: Path) -> str:
    from bot.config import load_config

    async with open_core(db_url, load_config(tmp_path / "signoff.yml"), slack=False,
                         clock=FakeClock(datetime.now(UTC))) as core:
        req = await core.submit(labels=["escalation"], context={"summary": "Refund order 77"})
    return str(req["id"])


def test_digest_run_without_slack_records_the_run_and_says_nothing_was_posted(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    _env(monkeypatch, tmp_path, sqlite_url)
    asyncio.run(_seed(sqlite_url, tmp_path))
    assert main(["digest", "run", "morning"]) == 0
    assert "digest morning: 1 pending request(s); not posted (Slack is not configured)" in capsys.readouterr().out
    assert main(["digest", "run", "nope"]) == 1
    assert "no digest named 'nope' (known: morning, hourly)" in capsys.readouterr().err
    assert main(["digest", "run"]) == 0  # every digest
    out = capsys.readouterr().out
    assert "digest morning: 1 pending" in out and "digest hourly: 0 pending request(s); nothing to post" in out


async def test_digest_run_posts_to_slack_at_once(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sqlite_url: str) -> None:
    _env(monkeypatch, tmp_path, sqlite_url)
    rid = await _seed(sqlite_url, tmp_path)
    async with FakeSlack() as slack:
        monkeypatch.setenv("SLACK_BOT_TOKEN", slack.token)
        monkeypatch.setenv("SLACK_SIGNING_SECRET", SIGNING_SECRET)
        monkeypatch.setenv("SLACK_API_URL", slack.api_url)
        assert await asyncio.to_thread(main, ["digest", "run", "morning"]) == 0
        (post,) = slack.calls("chat.postMessage")
        assert post.params["channel"] == "C0DIGEST"
        assert rid in str(post.params["blocks"]) and "Refund order 77" in str(post.params["blocks"])
        slack.assert_no_breaches()
    async with open_core(sqlite_url, slack=False) as core, core.db.read() as s:
        (run,) = await repo.digest_runs(s, name="morning")
    assert run.posted and run.request_count == 1 and run.period.startswith("manual-")
