"""``/signoff pending`` with 10,000 pending requests: how fast the first page answers (issue 4, point 1).

Run ``.venv/bin/python bench/commands.py [--pending 10000] [--runs 40] [--store sqlite|postgres]``.

A real signoff app (``SignoffApp``: aiohttp server, Bolt, the database) listens on loopback; Slack is the fake Web
API of ``tests/support/fakeslack.py`` (a real HTTP server too), so the reply travels through a real response_url.
Each run sends a signed slash command and measures two figures from the moment the request leaves:

- **ack**: the HTTP response to Slack (must be well inside Slack's 3 s);
- **reply**: the ephemeral first page arriving at the response_url (the figure the 200 ms target is about).

The pending requests are written straight through the repository's bulk insert (as ``ApprovalService.submit``
would write them), each with a label, so filtered lists have realistic work to do.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)] if str(ROOT) not in sys.path else []

import aiohttp  # noqa: E402

from bot.app import SignoffApp, Tuning  # noqa: E402
from bot.config import parse_config  # noqa: E402
from bot.domain import new_id  # noqa: E402
from bot.settings import Secret, Settings  # noqa: E402
from storage import repository as repo  # noqa: E402
from tests.support.fakeslack import FakeSlack  # noqa: E402
from tests.support.slack_requests import SIGNING_SECRET, post_signed, slash_command  # noqa: E402

TARGET_MS = 200.0
USER = "U0DANA"
CHANNEL = "C0APPROVALS"
TOOLS = ("send_email", "issue_refund", "run_sql", "deploy_service")
LABELS = ("needs-human-review", "escalation", "refunds", "billing")


def _rows(n: int, now: datetime) -> Iterator[tuple[dict[str, Any], str]]:
    for i in range(n):
        created = now - timedelta(seconds=(n - i) / 100)
        yield dict(
            id=new_id("req_", created), status="pending", tool=TOOLS[i % len(TOOLS)],
            args={"to": f"customer{i}@example.com", "subject": f"Refund for order #{i}", "body": "Hello " * 40},
            final_args=None, context={"summary": f"Refund confirmation for order #{i}"}, agent=f"agent-{i % 7}",
            risk=("low", "medium", "high", "critical")[i % 4], channel=CHANNEL,
            reviewers=["S0REVIEWERS"] if i % 3 else [USER], required_approvals=1, version=1, created_at=created,
            expires_at=now + timedelta(hours=6), idempotency_key=None, body_hash=None, callback_url=None, rule=None,
            remind_at=None, escalate_at=None,
        ), LABELS[i % len(LABELS)]


async def seed(app: SignoffApp, n: int) -> None:
    rows = list(_rows(n, datetime.now(UTC)))
    for start in range(0, n, 2000):
        chunk = rows[start : start + 2000]
        async with app.db.write() as s:
            await repo.insert_requests(s, rows=[r for r, _ in chunk])
            await repo.insert_labels(s, pairs=[(r["id"], label) for r, label in chunk])


@contextmanager
def _postgres(store: str) -> Iterator[str | None]:
    if store != "postgres":
        yield None
        return
    from tests.support.pg import postgres_server

    with postgres_server() as server:
        yield server  # replaced by a fresh database below (create_database runs its own event loop)


async def measure(slack: FakeSlack, http: aiohttp.ClientSession, url: str, text: str) -> tuple[float, float, int]:
    """One command: (ack ms, reply ms, requests listed)."""
    response_url = slack.response_url(channel=CHANNEL, user=USER)
    req = slash_command(text=text, user_id=USER, channel_id=CHANNEL, response_url=response_url)
    before = len(slack.calls("response_url"))
    t0 = time.monotonic()
    reply = await post_signed(http, url, req.body, req.headers)
    ack_ms = (time.monotonic() - t0) * 1000
    assert reply.status == 200, reply
    await slack.wait_for("response_url", before + 1, timeout=10)
    (call,) = slack.response_posts(response_url)
    listed = sum(1 for b in call.params.get("blocks") or [] if (b.get("accessory") or {}).get("value"))
    return ack_ms, (call.time - t0) * 1000, listed


def _summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"median {statistics.median(ordered):6.1f} ms · p95 {p95:6.1f} ms · max {ordered[-1]:6.1f} ms"


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, _postgres(args.store) as pg_server:
        if pg_server is not None:
            from tests.support.pg import create_database

            db_url = await asyncio.to_thread(create_database, pg_server, "bench_commands")
        else:
            db_url = f"sqlite:///{tmp}/bench.db"
        async with FakeSlack(usergroups={"S0REVIEWERS": [USER]}, users={USER: {"name": "dana"}}) as slack:
            settings = Settings(database_url=db_url, host="127.0.0.1", port=0, slack_bot_token=Secret(slack.token),
                                slack_signing_secret=Secret(SIGNING_SECRET), slack_api_url=slack.api_url,
                                log_level="WARNING")
            app = SignoffApp(settings, config=parse_config({"reviewers": ["S0REVIEWERS"]}),
                             tuning=Tuning(run_scheduler=False))
            await app.start()
            try:
                t = time.monotonic()
                await seed(app, args.pending)
                print(f"seeded {args.pending} pending requests in {time.monotonic() - t:.1f} s ({args.store})")
                url = app.url + "/slack/events"
                async with aiohttp.ClientSession() as http:
                    for _ in range(5):  # warm up: auth.test, connection pools, statement caches
                        await measure(slack, http, url, "pending")
                    failed = False
                    for text in ("pending", "pending tool:run_sql", "pending label:escalation", "mine"):
                        acks, replies, listed = [], [], 0
                        for _ in range(args.runs):
                            ack_ms, reply_ms, listed = await measure(slack, http, url, text)
                            acks.append(ack_ms)
                            replies.append(reply_ms)
                        first = text == "pending"
                        verdict = ""
                        if first:
                            ok = statistics.median(replies) < TARGET_MS
                            failed = failed or not ok
                            verdict = f"  -> {'OK' if ok else 'MISSED'} (target < {TARGET_MS:.0f} ms)"
                        print(f"/signoff {text:<26} {listed:2d} listed")
                        print(f"    ack   {_summary(acks)}")
                        print(f"    reply {_summary(replies)}{verdict}")
            finally:
                await app.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
