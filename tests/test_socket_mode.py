"""Socket Mode: with SLACK_APP_TOKEN the app connects out over a WebSocket instead of serving /slack/events."""

from __future__ import annotations

from bot.app import Tuning
from bot.ids import Action
from bot.settings import Secret
from tests.conftest import start_live
from tests.support.slack_live import CHANNEL, DANA, default_config, fake_slack
from tests.support.slack_requests import block_action


async def test_socket_mode_click_approves(sqlite_url: str) -> None:
    async with fake_slack() as slack:
        live = await start_live(sqlite_url, config=default_config(), tuning=Tuning(outbox_poll_s=0.05),
                                slack_bot_token=Secret(slack.token), slack_app_token=Secret(slack.app_token),
                                slack_api_url=slack.api_url)
        try:
            assert slack.socket_connected.is_set()
            status, _ = await live.call("POST", "/slack/events", json={})
            assert status == 404  # no HTTP endpoint in Socket Mode
            req = await live.submit()
            await slack.wait_for("chat.postMessage", 1, ok=True)
            _, req = await live.call("GET", f"/v1/requests/{req['id']}")
            for _ in range(100):
                if (req.get("slack") or {}).get("ts"):
                    break
                _, req = await live.call("GET", f"/v1/requests/{req['id']}")
            click = block_action(action_id=Action.APPROVE, value=req["id"], user_id=DANA, channel=CHANNEL,
                                 message_ts=req["slack"]["ts"])
            envelope = await slack.socket_send("interactive", click.payload)
            ack = await slack.socket_ack(envelope)
            assert ack["envelope_id"] == envelope
            _, done = await live.call("GET", f"/v1/requests/{req['id']}/wait?timeout_s=5")
            assert done["status"] == "approved" and done["decision"]["by"] == {"id": DANA, "name": "Dana",
                                                                              "via": "slack"}
        finally:
            await live.http.close()
            await live.app.stop()
