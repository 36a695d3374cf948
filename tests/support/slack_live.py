"""A live signoff app wired to the fake Slack Web API, with helpers to send signed Slack requests to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from bot.app import Tuning
from bot.config import Config, parse_config
from bot.settings import Secret
from tests.conftest import Live, start_live
from tests.support.fakeslack import FakeSlack
from tests.support.slack_requests import SIGNING_SECRET, SignedReply, SlackRequest, post_signed

CHANNEL = "C0APPROVALS"
REVIEWERS_GROUP = "S0REVIEWERS"
DANA, ERIN, MALLORY, OLIVER = "U0DANA", "U0ERIN", "U0MALLORY", "U0OLIVER"

USERS = {
    DANA: {"name": "dana", "real_name": "Dana Scully", "profile": {"display_name": "Dana"}},
    ERIN: {"name": "erin", "real_name": "Erin Hart", "profile": {"display_name": "Erin"}},
    MALLORY: {"name": "mallory", "real_name": "Mallory", "profile": {"display_name": "Mallory"}},
    OLIVER: {"name": "oliver", "real_name": "Oliver Requester", "profile": {"display_name": "Oliver"}},
}


def default_config(**extra: Any) -> Config:
    return parse_config({"slack": {"default_channel": CHANNEL}, "reviewers": [REVIEWERS_GROUP], **extra})


def fake_slack(**kw: Any) -> FakeSlack:
    kw.setdefault("usergroups", {REVIEWERS_GROUP: [DANA, ERIN, OLIVER]})
    kw.setdefault("users", USERS)
    return FakeSlack(**kw)


@dataclass
class SlackLive:
    live: Live
    slack: FakeSlack

    async def send(self, req: SlackRequest) -> SignedReply:
        return await post_signed(self.live.http, self.live.url + "/slack/events", req.body, req.headers)

    async def card_for(self, request_id: str, *, timeout: float = 5.0) -> dict[str, Any]:
        """Wait until the request's card is posted and recorded; return the request JSON."""
        import asyncio

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            status, req = await self.live.call("GET", f"/v1/requests/{request_id}", token=self.live.admin_token)
            assert status == 200, req
            if (req.get("slack") or {}).get("ts"):
                return dict(req)
            if loop.time() > deadline:
                raise AssertionError(f"no card recorded for {request_id}")
            await asyncio.sleep(0.02)


async def start_slack_live(db_url: str, slack: FakeSlack, *, config: Config | None = None,
                           tuning: Tuning | None = None, **kw: Any) -> SlackLive:
    live = await start_live(
        db_url, config=config or default_config(), **kw,
        tuning=tuning or Tuning(outbox_poll_s=0.05, outbox_base_delay_s=0.05),
        slack_bot_token=Secret(slack.token), slack_signing_secret=Secret(SIGNING_SECRET),
        slack_api_url=slack.api_url,
    )
    return SlackLive(live, slack)


@asynccontextmanager
async def slack_app(db_url: str, **kw: Any) -> AsyncIterator[SlackLive]:
    """A live app on a fresh fake Slack; stops both and checks no Block Kit limit was breached."""
    async with fake_slack() as slack:
        s = await start_slack_live(db_url, slack, **kw)
        try:
            yield s
        finally:
            await s.live.http.close()
            await s.live.app.stop()
        slack.assert_no_breaches()
