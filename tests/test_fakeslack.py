"""The test doubles themselves: the fake Slack Web API (driven through slack_sdk's real client), its Block Kit
limit checker, and the signed request builders (driven through Bolt's real verification and routing)."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.ids import SLASH_COMMAND, Action, Block, View
from tests.support import slack_requests as sr
from tests.support.blockkit_limits import check_message_blocks, check_view
from tests.support.fakeslack import FakeSlack

PAYLOADS = Path(__file__).resolve().parents[2] / "shared" / "slack" / "payloads"
SECRET = "test-signing-secret"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(usergroups={"S0REVIEWERS": ["U1", "U2"]},
                         users={"U1": {"name": "dana", "real_name": "Dana Scully"}}) as fake:
        yield fake


def client_for(slack: FakeSlack, *retry: Any, token: str | None = None, timeout: int = 10) -> AsyncWebClient:
    return AsyncWebClient(token=token or slack.token, base_url=slack.api_url, retry_handlers=list(retry),
                          timeout=timeout)


def button(action_id: str, value: str = "v", text: str = "Go") -> dict[str, Any]:
    return {"type": "button", "action_id": action_id, "value": value, "text": {"type": "plain_text", "text": text}}


def section(text: str, block_id: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    if block_id:
        block["block_id"] = block_id
    return block


# --- the fake Web API through slack_sdk --------------------------------------------------------------------


async def test_base_url_auth_test_and_invalid_token(slack: FakeSlack) -> None:
    assert slack.api_url == slack.url + "/api/" and slack.url.startswith("http://127.0.0.1:")
    auth = await client_for(slack).auth_test()
    assert (auth["user_id"], auth["bot_id"], auth["team_id"]) == ("U0SIGNOFF", "B0SIGNOFF", "T0FAKE")
    with pytest.raises(SlackApiError) as err:
        await client_for(slack, token="xoxb-wrong").auth_test()
    assert err.value.response["error"] == "invalid_auth"
    assert [(c.method, c.ok) for c in slack.calls()] == [("auth.test", True), ("auth.test", False)]


async def test_post_update_permalink_and_ephemeral(slack: FakeSlack) -> None:
    client = client_for(slack)
    first = await client.chat_postMessage(channel="C1", text="card", blocks=[section("*deploy*", "b1")])
    second = await client.chat_postMessage(channel="C1", text="reply", thread_ts=first["ts"])
    other = await client.chat_postMessage(channel="C2", text="elsewhere")
    assert first["channel"] == "C1" and float(first["ts"]) < float(second["ts"]) < float(other["ts"])
    assert [m.text for m in slack.messages_in("C1")] == ["card", "reply"]
    assert [m.ts for m in slack.replies("C1", first["ts"])] == [second["ts"]]
    assert slack.calls("chat.postMessage")[0].params["blocks"] == [section("*deploy*", "b1")]

    updated = await client.chat_update(channel="C1", ts=first["ts"], text="decided",
                                       blocks=[section("approved by <@U1>", "b2")])
    card = slack.message("C1", first["ts"])
    assert updated["ts"] == first["ts"] and card.text == "decided"
    assert card.blocks == [section("approved by <@U1>", "b2")]
    assert card.history == [{"text": "card", "blocks": [section("*deploy*", "b1")]}]
    await client.chat_update(channel="C1", ts=first["ts"], text="text only")
    assert card.blocks == [section("approved by <@U1>", "b2")]     # omitted blocks are kept

    for kwargs, error in (({"ts": "1.000001", "text": "x"}, "message_not_found"),
                          ({"ts": first["ts"], "text": "x" * 4001}, "msg_too_long")):
        with pytest.raises(SlackApiError) as err:
            await client.chat_update(channel="C1", **kwargs)
        assert err.value.response["error"] == error

    link = await client.chat_getPermalink(channel="C1", message_ts=first["ts"])
    assert link["permalink"].endswith("/archives/C1/p" + first["ts"].replace(".", ""))
    eph = await client.chat_postEphemeral(channel="C1", user="U9", text="only you")
    assert [(e.user, e.text, e.ts) for e in slack.ephemerals(channel="C1")] == [("U9", "only you",
                                                                                 eph["message_ts"])]
    long = await client.chat_postMessage(channel="C3", text="x" * 40001)
    assert long["response_metadata"]["warnings"] == ["message_truncated"]
    assert len(slack.message("C3", long["ts"]).text) == 40000
    calls = await slack.wait_for("chat.postMessage", 3)
    assert [c.params["channel"] for c in calls] == ["C1", "C1", "C2", "C3"]
    slack.assert_no_breaches()


async def test_form_encoded_calls_are_understood(slack: FakeSlack) -> None:
    # slack_sdk sends some methods as form data or query params; blocks then arrive as a JSON string.
    client = client_for(slack)
    resp = await client.api_call("chat.postMessage", data={"channel": "C1", "text": "t",
                                                           "blocks": json.dumps([section("hi")])})
    assert slack.message("C1", resp["ts"]).blocks == [section("hi")]
    await client.conversations_open(users="U1")            # POST with query params
    assert slack.calls("conversations.open")[0].params == {"users": "U1"}
    async with aiohttp.ClientSession() as session, session.post(
            slack.api_url + "chat.postMessage", data="{not json", headers={
                "Authorization": f"Bearer {slack.token}", "Content-Type": "application/json"}) as raw:
        assert (await raw.json())["error"] == "invalid_json"


async def test_wait_for_times_out_with_a_useful_message(slack: FakeSlack) -> None:
    with pytest.raises(AssertionError, match=r"expected 1 chat.update call\(s\).*auth.test:200"):
        await client_for(slack).auth_test()
        await slack.wait_for("chat.update", 1, timeout=0.2)


async def test_rate_limit_answers_429_and_slack_sdk_honours_retry_after() -> None:
    async with FakeSlack(post_rate=1.0, post_burst=1) as slack:
        plain = client_for(slack)
        await plain.chat_postMessage(channel="C1", text="1")
        with pytest.raises(SlackApiError) as err:
            await plain.chat_postMessage(channel="C1", text="2")
        assert err.value.response.status_code == 429
        assert err.value.response.headers["Retry-After"] == "1"
        assert err.value.response["error"] == "ratelimited"
        await plain.chat_postMessage(channel="C2", text="other channel has its own bucket")

        retrying = client_for(slack, AsyncRateLimitErrorRetryHandler(max_retry_count=2))
        started = time.monotonic()
        resp = await retrying.chat_postMessage(channel="C1", text="3")
        assert resp["ok"] and time.monotonic() - started >= 1.0
        posts = [c for c in slack.calls("chat.postMessage") if c.params["channel"] == "C1"]
        assert [c.status for c in posts] == [200, 429, 429, 200]
        assert posts[3].time - posts[2].time >= 1.0           # slept Retry-After before retrying
        assert slack.ratelimited == 2
        assert [m.text for m in slack.messages_in("C1")] == ["1", "3"]


async def test_over_limit_message_is_rejected_as_invalid_blocks(slack: FakeSlack) -> None:
    client = client_for(slack)
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel="C1", text="t", blocks=[section(str(i)) for i in range(51)])
    assert err.value.response["error"] == "invalid_blocks"
    assert err.value.response["errors"] == ["must be less than 51 items [json-pointer:/blocks]"]
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel="C1", text="t", blocks=[section("x" * 3001)])
    assert err.value.response["errors"] == ["must be less than 3001 characters [json-pointer:/blocks/0/text/text]"]
    assert slack.messages_in("C1") == []
    assert [b.method for b in slack.breaches] == ["chat.postMessage", "chat.postMessage"]
    with pytest.raises(AssertionError, match="Block Kit limits breached"):
        slack.assert_no_breaches()


async def test_injected_500_fails_once_then_server_error_retry_recovers(slack: FakeSlack) -> None:
    slack.fail("chat.postMessage", 500)
    with pytest.raises(SlackApiError) as err:
        await client_for(slack).chat_postMessage(channel="C1", text="a")
    assert err.value.response.status_code == 500
    slack.fail("chat.postMessage", 500, times=1)
    resp = await client_for(slack, AsyncServerErrorRetryHandler(max_retry_count=1)).chat_postMessage(
        channel="C1", text="b")
    assert resp["ok"]
    assert [c.status for c in slack.calls("chat.postMessage")] == [500, 500, 200]
    slack.fail("chat.update", 429, times=None, retry_after=7)
    for _ in range(2):
        with pytest.raises(SlackApiError) as err:
            await client_for(slack).chat_update(channel="C1", ts=resp["ts"], text="c")
        assert err.value.response.headers["Retry-After"] == "7"
    slack.clear_faults()
    assert (await client_for(slack).chat_update(channel="C1", ts=resp["ts"], text="c"))["ok"]


async def test_down_and_up(slack: FakeSlack) -> None:
    client = client_for(slack)
    await client.auth_test()                    # leaves a pooled keep-alive connection behind
    url = slack.url
    await slack.down()
    with pytest.raises(aiohttp.ClientConnectionError):
        await client.auth_test()
    await slack.up()
    assert slack.url == url and (await client.auth_test())["ok"]

    await slack.down("503")
    with pytest.raises(SlackApiError) as err:
        await client.auth_test()
    assert err.value.response.status_code == 503
    await slack.down("reset")
    with pytest.raises(aiohttp.ClientConnectionError):
        await client.auth_test()
    await slack.up()
    resilient = client_for(slack, AsyncConnectionErrorRetryHandler(max_retry_count=1))
    assert (await resilient.auth_test())["ok"]
    assert [c.status for c in slack.calls("auth.test")] == [200, 200, 503, 0, 200]


async def test_hang_delays_until_the_client_gives_up(slack: FakeSlack) -> None:
    slack.hang("views.open", 30)
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await client_for(slack, timeout=1).views_open(trigger_id=slack.trigger("U1"), view={
            "type": "modal", "title": {"type": "plain_text", "text": "t"}, "blocks": []})
    assert 0.9 <= time.monotonic() - started < 5
    await slack.stop()                          # does not wait 30 s for the hanging handler
    assert time.monotonic() - started < 5


def modal(title: str = "Edit", **extra: Any) -> dict[str, Any]:
    return {"type": "modal", "callback_id": View.EDIT, "title": {"type": "plain_text", "text": title},
            "submit": {"type": "plain_text", "text": "Save"}, "blocks": [section("x")], **extra}


async def test_views_follow_trigger_and_stack_rules(slack: FakeSlack) -> None:
    client = client_for(slack)
    trigger = slack.trigger("U1")
    opened = (await client.views_open(trigger_id=trigger, view=modal(private_metadata="req-1")))["view"]
    assert slack.modal_stack("U1") == [opened] and opened["private_metadata"] == "req-1"
    with pytest.raises(SlackApiError) as err:
        await client.views_open(trigger_id=trigger, view=modal())
    assert err.value.response["error"] == "exchanged_trigger_id"
    stale = f"{int((time.time() - 4) * 1000):013d}.U1.0123456789abcdef"
    for trigger_id, error in ((stale, "expired_trigger_id"), ("123.abc", "invalid_trigger_id")):
        with pytest.raises(SlackApiError) as err:
            await client.views_open(trigger_id=trigger_id, view=modal())
        assert err.value.response["error"] == error

    for _ in range(2):
        await client.views_push(trigger_id=slack.trigger("U1"), view=modal("More"))
    with pytest.raises(SlackApiError) as err:
        await client.views_push(trigger_id=slack.trigger("U1"), view=modal("Too many"))
    assert err.value.response["error"] == "push_limit_reached"
    assert [v["title"]["text"] for v in slack.modal_stack("U1")] == ["Edit", "More", "More"]

    updated = (await client.views_update(view_id=opened["id"], hash=opened["hash"], view=modal("Saved")))["view"]
    assert updated["id"] == opened["id"] and slack.modal_stack("U1")[0]["title"]["text"] == "Saved"
    with pytest.raises(SlackApiError) as err:
        await client.views_update(view_id=opened["id"], hash=opened["hash"], view=modal("Stale"))
    assert err.value.response["error"] == "hash_conflict"

    with pytest.raises(SlackApiError) as err:
        await client.views_open(trigger_id=slack.trigger("U1"), view=modal("A title over 24 characters"))
    assert err.value.response["error"] == "invalid_arguments"
    assert slack.breaches[-1].errors == ["must be less than 25 characters [json-pointer:/view/title/text]"]

    home = {"type": "home", "blocks": [section("waiting for you: 2")]}
    published = (await client.views_publish(user_id="U1", view=home))["view"]
    await client.views_publish(user_id="U1", view={"type": "home", "blocks": [section("waiting: 1")]},
                               hash=published["hash"])
    current = slack.home_view("U1")
    assert current is not None and current["blocks"] == [section("waiting: 1")]
    assert {v["type"] for v in slack.views_for("U1")} == {"modal", "home"}


async def test_usergroups_users_and_dms(slack: FakeSlack) -> None:
    client = client_for(slack)
    assert (await client.usergroups_users_list(usergroup="S0REVIEWERS"))["users"] == ["U1", "U2"]
    slack.usergroups["S0REVIEWERS"] = ["U3"]                 # membership changes are visible at once
    assert (await client.usergroups_users_list(usergroup="S0REVIEWERS"))["users"] == ["U3"]
    user = (await client.users_info(user="U1"))["user"]
    assert (user["name"], user["real_name"], user["profile"]["display_name"], user["deleted"]) == (
        "dana", "Dana Scully", "dana", False)
    for call, error in ((client.usergroups_users_list(usergroup="S0NOPE"), "no_such_subteam"),
                        (client.users_info(user="U404"), "user_not_found"),
                        (client.conversations_open(users="U404"), "user_not_found")):
        with pytest.raises(SlackApiError) as err:
            await call
        assert err.value.response["error"] == error
    dm = (await client.conversations_open(users="U1"))["channel"]["id"]
    assert dm == slack.dm_channel("U1")
    await client.chat_postMessage(channel=dm, text="please review")
    assert [m.text for m in slack.messages_in(dm)] == ["please review"]


async def test_response_url_replaces_deletes_and_posts(slack: FakeSlack) -> None:
    card = await client_for(slack).chat_postMessage(channel="C1", text="card")
    on_card = AsyncWebhookClient(slack.response_url(channel="C1", user="U1", message_ts=card["ts"]))
    await on_card.send(text="only for you")
    assert [(e.user, e.text, e.via) for e in slack.ephemerals(channel="C1")] == [("U1", "only for you",
                                                                                  "response_url")]
    await on_card.send(text="approved", blocks=[section("approved")], replace_original=True)
    assert slack.message("C1", card["ts"]).text == "approved"
    await on_card.send(text="for everyone", response_type="in_channel")
    assert [m.text for m in slack.messages_in("C1")] == ["approved", "for everyone"]
    await on_card.send(delete_original=True)
    assert [m.text for m in slack.messages_in("C1")] == ["for everyone"]
    assert (await on_card.send(text="fifth use")).status_code == 200
    over = await on_card.send(text="sixth use")                     # 5 uses per response_url
    assert over.status_code == 404 and json.loads(over.body)["error"] == "used_url"

    command = AsyncWebhookClient(slack.response_url(channel="C2", user="U2"))   # slash command: no original
    await command.send(text="page 1")
    await command.send(text="page 2", replace_original=True)
    (reply,) = slack.ephemerals(user="U2")
    assert (reply.text, reply.replaced) == ("page 2", 1)
    await command.send(delete_original=True)
    assert slack.ephemerals(user="U2") == []

    bad = await command.send(text="t", blocks=[section("x" * 3001)])
    assert bad.status_code == 400 and json.loads(bad.body)["error"] == "invalid_blocks"
    assert [c.status for c in slack.response_posts()][-1] == 400


# --- Block Kit limits (pure) -------------------------------------------------------------------------------


def valid_blocks() -> list[dict[str, Any]]:
    return [
        {"type": "header", "block_id": "h", "text": {"type": "plain_text", "text": "Deploy to prod"}},
        {"type": "section", "block_id": "s", "text": {"type": "mrkdwn", "text": "*args*"},
         "fields": [{"type": "mrkdwn", "text": "a"}], "accessory": button(Action.VIEW_FULL)},
        {"type": "actions", "block_id": Block.ACTIONS, "elements": [
            {**button(Action.APPROVE, "r1", "Approve"), "style": "primary"},
            button(Action.EDIT, "r1", "Edit"),
            {**button(Action.REJECT, "r1", "Reject"), "style": "danger",
             "confirm": {"title": {"type": "plain_text", "text": "Sure?"},
                         "text": {"type": "mrkdwn", "text": "Reject it"},
                         "confirm": {"type": "plain_text", "text": "Yes"},
                         "deny": {"type": "plain_text", "text": "No"}}},
            {"type": "overflow", "action_id": Action.OVERFLOW, "options": [
                {"text": {"type": "plain_text", "text": "Copy id"}, "value": "copy"}]},
        ]},
        {"type": "context", "block_id": "c", "elements": [{"type": "mrkdwn", "text": "expires soon"}]},
        {"type": "divider"},
        {"type": "input", "block_id": "arg:to", "label": {"type": "plain_text", "text": "to"},
         "element": {"type": "plain_text_input", "action_id": "value", "initial_value": "x"}},
    ]


def _set(path: str, value: Any) -> Callable[[list[dict[str, Any]]], None]:
    def mutate(blocks: list[dict[str, Any]]) -> None:
        *parents, last = path.split("/")
        node: Any = blocks
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[int(last) if isinstance(node, list) else last] = value
    return mutate


OPTION = {"text": {"type": "plain_text", "text": "o"}, "value": "o"}
MESSAGE_BREACHES = [
    ("section text", _set("1/text/text", "x" * 3001), "/blocks/1/text/text"),
    ("11 fields", _set("1/fields", [{"type": "mrkdwn", "text": "f"}] * 11), "/blocks/1/fields"),
    ("field text", _set("1/fields/0/text", "x" * 2001), "/blocks/1/fields/0/text"),
    ("header", _set("0/text/text", "x" * 151), "/blocks/0/text/text"),
    ("header mrkdwn", _set("0/text/type", "mrkdwn"), "/blocks/0/text/type"),
    ("button text", _set("2/elements/0/text/text", "x" * 76), "/blocks/2/elements/0/text/text"),
    ("button value", _set("2/elements/0/value", "x" * 2001), "/blocks/2/elements/0/value"),
    ("button style", _set("2/elements/0/style", "green"), "/blocks/2/elements/0/style"),
    ("action_id", _set("2/elements/1/action_id", "x" * 256), "/blocks/2/elements/1/action_id"),
    ("duplicate action_id", _set("2/elements/1/action_id", Action.APPROVE), "/blocks/2/elements/1/action_id"),
    ("block_id", _set("3/block_id", "x" * 256), "/blocks/3/block_id"),
    ("duplicate block_id", _set("3/block_id", "h"), "/blocks/3/block_id"),
    ("overflow options", _set("2/elements/3/options", [OPTION] * 6), "/blocks/2/elements/3/options"),
    ("option text", _set("2/elements/3/options/0/text/text", "x" * 76), "/blocks/2/elements/3/options/0/text/text"),
    ("option value", _set("2/elements/3/options/0/value", "x" * 151), "/blocks/2/elements/3/options/0/value"),
    ("confirm title", _set("2/elements/2/confirm/title/text", "x" * 101), "/confirm/title/text"),
    ("confirm text", _set("2/elements/2/confirm/text/text", "x" * 301), "/confirm/text/text"),
    ("confirm button", _set("2/elements/2/confirm/confirm/text", "x" * 31), "/confirm/confirm/text"),
    ("confirm deny", _set("2/elements/2/confirm/deny/text", "x" * 31), "/confirm/deny/text"),
    ("26 actions", _set("2/elements", [button(f"a{i}") for i in range(26)]), "/blocks/2/elements"),
    ("11 context", _set("3/elements", [{"type": "mrkdwn", "text": "c"}] * 11), "/blocks/3/elements"),
    ("input label", _set("5/label/text", "x" * 2001), "/blocks/5/label/text"),
    ("initial_value", _set("5/element/initial_value", "x" * 3001), "/blocks/5/element/initial_value"),
    ("empty text", _set("1/text/text", ""), "/blocks/1/text/text"),
    ("unknown block", _set("4/type", "carousel"), "/blocks/4/type"),
]


def test_valid_blocks_pass() -> None:
    assert check_message_blocks(valid_blocks()) == []
    assert check_message_blocks([section(str(i)) for i in range(50)]) == []
    assert check_view(modal(blocks=[section(str(i)) for i in range(100)])) == []


@pytest.mark.parametrize(("name", "mutate", "pointer"), MESSAGE_BREACHES, ids=[b[0] for b in MESSAGE_BREACHES])
def test_each_message_limit_is_enforced(name: str, mutate: Callable[[list[dict[str, Any]]], None],
                                        pointer: str) -> None:
    blocks = valid_blocks()
    mutate(blocks)
    errors = check_message_blocks(blocks)
    assert len(errors) == 1 and errors[0].endswith(pointer + "]"), errors


VIEW_BREACHES = [
    ("title", modal("x" * 25), "/view/title/text"),
    ("submit", modal(submit={"type": "plain_text", "text": "x" * 25}), "/view/submit/text"),
    ("close", modal(close={"type": "plain_text", "text": "x" * 25}), "/view/close/text"),
    ("private_metadata", modal(private_metadata="x" * 3001), "/view/private_metadata"),
    ("callback_id", modal(callback_id="x" * 256), "/view/callback_id"),
    ("101 blocks", modal(blocks=[section(str(i)) for i in range(101)]), "/view/blocks"),
    ("input without submit", {k: v for k, v in modal(blocks=valid_blocks()[5:]).items() if k != "submit"},
     "/view/submit"),
    ("home with submit", {"type": "home", "blocks": [], "submit": {"type": "plain_text", "text": "s"}},
     "/view/submit"),
]


@pytest.mark.parametrize(("name", "view", "pointer"), VIEW_BREACHES, ids=[b[0] for b in VIEW_BREACHES])
def test_each_view_limit_is_enforced(name: str, view: dict[str, Any], pointer: str) -> None:
    errors = check_view(copy.deepcopy(view))
    assert len(errors) == 1 and errors[0].endswith(pointer + "]"), errors


# --- signed requests --------------------------------------------------------------------------------------


def test_sign_matches_slack_test_vector() -> None:
    vector = json.loads((PAYLOADS / "signature_test_vector.json").read_text())
    assert sr.sign(vector["signing_secret"], vector["raw_body"], vector["x_slack_request_timestamp"]) == \
        vector["expected_x_slack_signature"]
    headers = sr.signed_headers(SECRET, "a=b", "application/x-www-form-urlencoded")
    assert SignatureVerifier(SECRET).is_valid_request("a=b", headers)
    assert not SignatureVerifier("another secret").is_valid_request("a=b", headers)


def test_builders_match_the_real_payload_shapes() -> None:
    click = sr.block_action(action_id=Action.APPROVE, value="req-1", user_id="U1", user_name="dana",
                            channel="C1", message_ts="1700000000.000100", response_url="http://r/1")
    (raw,) = parse_qs(click.body)["payload"]
    payload = json.loads(raw)
    sample = json.loads((PAYLOADS / "block_actions.bolt_fixture.json").read_text())
    assert set(sample) <= set(payload)
    assert set(sample["actions"][0]) <= set(payload["actions"][0])
    assert payload["user"] == {"id": "U1", "username": "dana", "name": "dana", "team_id": "T0FAKE"}
    assert payload["container"] == {"type": "message", "message_ts": "1700000000.000100", "channel_id": "C1",
                                    "is_ephemeral": False}
    assert (payload["actions"][0]["value"], payload["response_url"]) == ("req-1", "http://r/1")
    assert sr.parse_trigger_id(payload["trigger_id"])[1] == "U1"  # type: ignore[index]

    submission = json.loads(parse_qs(sr.view_submission(
        callback_id=View.REJECT, values={"feedback": {"value": "no"}}, private_metadata="req-1").body)["payload"][0])
    vs_sample = json.loads((PAYLOADS / "view_submission.bolt_fixture.json").read_text())
    assert set(vs_sample) <= set(submission) and set(vs_sample["view"]) <= set(submission["view"])
    assert submission["view"]["state"]["values"] == {"feedback": {"value": {"type": "plain_text_input",
                                                                            "value": "no"}}}

    command = sr.slash_command(text="pending label:x", user_id="U1")
    fields = {k: v[0] for k, v in parse_qs(command.body, keep_blank_values=True).items()}
    expected = json.loads((PAYLOADS / "slash_command.json").read_text())
    assert set(expected) - {"enterprise_id", "enterprise_name"} <= set(fields)
    assert (fields["command"], fields["text"]) == (SLASH_COMMAND, "pending label:x")

    event = sr.event_callback(sr.app_home_opened("U1"))
    ev_sample = json.loads((PAYLOADS / "app_home_opened.event_callback.json").read_text())
    assert set(ev_sample) <= set(json.loads(event.body)) and event.headers["Content-Type"] == "application/json"


def bolt_app(slack: FakeSlack, seen: list[dict[str, Any]]) -> AsyncApp:
    app = AsyncApp(signing_secret=SECRET, client=client_for(slack), process_before_response=True)

    @app.action(Action.APPROVE)
    async def approve(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        seen.append(body)
        await client.chat_postEphemeral(channel=body["channel"]["id"], user=body["user"]["id"], text="noted")

    @app.view(View.REJECT)
    async def reject(ack: Any, view: dict[str, Any]) -> None:
        seen.append(view)
        await ack(response_action="errors", errors={"feedback": "say why"})

    @app.command(SLASH_COMMAND)
    async def command(ack: Any, command: dict[str, Any], respond: Any) -> None:
        await ack()
        seen.append(command)
        await respond(text=f"you asked: {command['text']}")

    @app.event("app_home_opened")
    async def home(event: dict[str, Any], client: AsyncWebClient) -> None:
        seen.append(event)
        await client.views_publish(user_id=event["user"], view={"type": "home", "blocks": [section("hi")]})

    return app


def _bolt_request(body: str, headers: dict[str, str]) -> AsyncBoltRequest:
    return AsyncBoltRequest(body=body, headers=dict[str, str | Sequence[str]](headers))


def _dispatchable(req: sr.SlackRequest) -> AsyncBoltRequest:
    return _bolt_request(req.body, req.headers)


async def test_bolt_verifies_and_routes_built_requests(slack: FakeSlack) -> None:
    seen: list[dict[str, Any]] = []
    app = bolt_app(slack, seen)
    click = sr.block_action(action_id=Action.APPROVE, value="req-1", user_id="U1", channel="C1", secret=SECRET)
    resp = await app.async_dispatch(_dispatchable(click))
    assert resp.status == 200
    assert seen[0]["actions"][0]["value"] == "req-1"
    assert [(e.user, e.text) for e in slack.ephemerals(channel="C1")] == [("U1", "noted")]
    assert len(slack.calls("auth.test")) == 1

    submit = sr.view_submission(callback_id=View.REJECT, values={"feedback": {"value": ""}},
                                private_metadata="req-1", secret=SECRET)
    resp = await app.async_dispatch(_dispatchable(submit))
    assert resp.status == 200 and json.loads(resp.body) == {"response_action": "errors",
                                                             "errors": {"feedback": "say why"}}
    assert seen[1]["private_metadata"] == "req-1"

    event = sr.event_callback(sr.app_home_opened("U1"), secret=SECRET)
    assert (await app.async_dispatch(_dispatchable(event))).status == 200
    home = slack.home_view("U1")
    assert home is not None and home["blocks"] == [section("hi")]


@pytest.mark.parametrize("tamper", ["wrong secret", "stale", "future", "edited body"])
async def test_bolt_rejects_bad_signatures(slack: FakeSlack, tamper: str) -> None:
    seen: list[dict[str, Any]] = []
    app = bolt_app(slack, seen)
    now = int(time.time())
    req = {
        "wrong secret": lambda: sr.block_action(action_id=Action.APPROVE, secret="not-the-secret"),
        "stale": lambda: sr.block_action(action_id=Action.APPROVE, secret=SECRET, timestamp=now - 301),
        "future": lambda: sr.block_action(action_id=Action.APPROVE, secret=SECRET, timestamp=now + 301),
        "edited body": lambda: sr.block_action(action_id=Action.APPROVE, secret=SECRET),
    }[tamper]()
    body = req.body.replace("U0REVIEWER", "U0INTRUDER") if tamper == "edited body" else req.body
    resp = await app.async_dispatch(_bolt_request(body, req.headers))
    assert resp.status == 401
    assert seen == [] and slack.ephemerals() == []
    # The same request, correctly signed and fresh, goes through: the 401 was about the signature alone.
    ok = sr.block_action(action_id=Action.APPROVE, secret=SECRET)
    assert (await app.async_dispatch(_dispatchable(ok))).status == 200


async def test_post_signed_over_http_to_a_bolt_route(slack: FakeSlack) -> None:
    seen: list[dict[str, Any]] = []
    bolt = bolt_app(slack, seen)

    async def events(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    web_app = web.Application()
    web_app.router.add_post("/slack/events", events)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
    try:
        response_url = slack.response_url(channel="C1", user="U1")
        command = sr.slash_command(text="pending label:deploy", user_id="U1", channel_id="C1",
                                   response_url=response_url, secret=SECRET)
        async with aiohttp.ClientSession() as session:
            reply = await sr.post_signed(session, url, command.body, command.headers)
            assert reply.status == 200
            forged = await sr.post_signed(session, url, command.body, {**command.headers,
                                                                       "X-Slack-Signature": "v0=00"})
            assert forged.status == 401
        assert seen[0]["text"] == "pending label:deploy"
        await slack.wait_for("response_url", 1)
        assert [e.text for e in slack.ephemerals(user="U1")] == ["you asked: pending label:deploy"]
    finally:
        await runner.cleanup()
