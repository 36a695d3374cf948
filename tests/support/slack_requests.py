"""Requests exactly as Slack sends them to ``POST /slack/events``: signed, and shaped like the samples in
``shared/slack/payloads/``.

Interactive payloads (``block_action``, ``view_submission``) are form-encoded as a single ``payload=`` field
holding URL-encoded JSON; slash commands are plain form fields; events are JSON (SLACK.md §5). Every builder
returns a :class:`SlackRequest` whose ``body`` is the raw text that was signed and whose ``headers`` carry
``X-Slack-Signature`` / ``X-Slack-Request-Timestamp``; pass ``secret=`` to sign with the app's signing secret and
``timestamp=`` to make a stale or future request.

Trigger ids come from :func:`new_trigger_id`: they carry the time they were issued and the user, so the fake Slack
can enforce Slack's rules (valid for 3 seconds, usable once) without any bookkeeping shared with the builders.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

SIGNING_SECRET = "signoff-test-signing-secret"
TEAM_ID = "T0FAKE"
TEAM_DOMAIN = "signoff-test"
API_APP_ID = "A0SIGNOFF"
BOT_ID = "B0SIGNOFF"
BOT_USER_ID = "U0SIGNOFF"
# A response_url nobody listens on (connection refused on loopback): use FakeSlack.response_url() to capture posts.
UNROUTED_RESPONSE_URL = "http://127.0.0.1:9/unrouted-response-url"

_seq = itertools.count(1)
_TRIGGER_RE = re.compile(r"^(\d{13})\.([UW][A-Z0-9]+)\.[0-9a-f]{16}$")


def sign(secret: str, body: str | bytes, ts: int | str) -> str:
    """Slack's v0 request signature: ``v0=`` + HMAC-SHA256(secret, ``v0:<ts>:<raw body>``) in hex."""
    raw = body.encode() if isinstance(body, str) else body
    base = b"v0:" + str(ts).encode() + b":" + raw
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_headers(secret: str, body: str, content_type: str, *, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": sign(secret, body, ts),
    }


def new_trigger_id(user_id: str) -> str:
    """A trigger id shaped ``<issued unix ms>.<user>.<16 hex>``; see :func:`parse_trigger_id`."""
    return f"{int(time.time() * 1000):013d}.{user_id}.{secrets.token_hex(8)}"


def parse_trigger_id(trigger_id: str) -> tuple[float, str] | None:
    """``(issued_at_unix_seconds, user_id)`` for ids from :func:`new_trigger_id`, else None."""
    m = _TRIGGER_RE.match(trigger_id)
    return (int(m.group(1)) / 1000, m.group(2)) if m else None


def _action_ts() -> str:
    return f"{time.time():.6f}"


@dataclass(frozen=True)
class SlackRequest:
    """A request ready to send: ``body`` is the raw (signed) text, ``payload`` the decoded content."""

    body: str
    headers: dict[str, str]
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SignedReply:
    status: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def _user(user_id: str, user_name: str | None, team_id: str) -> dict[str, Any]:
    name = user_name or user_id.lower()
    return {"id": user_id, "username": name, "name": name, "team_id": team_id}


def _interactive(payload: dict[str, Any], secret: str, timestamp: int | None) -> SlackRequest:
    body = "payload=" + quote(json.dumps(payload))
    return SlackRequest(body, signed_headers(secret, body, "application/x-www-form-urlencoded",
                                             timestamp=timestamp), payload)


def block_action(
    *,
    action_id: str,
    value: str | None = None,
    block_id: str = "signoff_actions",
    action_type: str = "button",
    action_text: str = "Click",
    selected_option: dict[str, Any] | None = None,
    user_id: str = "U0REVIEWER",
    user_name: str | None = None,
    team_id: str = TEAM_ID,
    channel: str = "C0APPROVALS",
    channel_name: str = "approvals",
    message_ts: str = "1700000000.000100",
    message: dict[str, Any] | None = None,
    is_ephemeral: bool = False,
    view: dict[str, Any] | None = None,
    state_values: dict[str, Any] | None = None,
    response_url: str = UNROUTED_RESPONSE_URL,
    trigger_id: str | None = None,
    api_app_id: str = API_APP_ID,
    secret: str = SIGNING_SECRET,
    timestamp: int | None = None,
) -> SlackRequest:
    """A ``block_actions`` payload: a click on a message (default) or, with ``view=``, inside a modal or Home.

    ``message`` is the clicked message as Slack echoes it back (e.g. ``FakeSlack.message(...).to_payload()``);
    by default a minimal bot message with ``message_ts``. ``selected_option`` is for overflow menus and selects.
    """
    action: dict[str, Any] = {"action_id": action_id, "block_id": block_id, "type": action_type,
                              "action_ts": _action_ts()}
    if action_type == "button":
        action["text"] = {"type": "plain_text", "text": action_text, "emoji": True}
    if value is not None:
        action["value"] = value
    if selected_option is not None:
        action["selected_option"] = selected_option
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": _user(user_id, user_name, team_id),
        "api_app_id": api_app_id,
        "token": "verification-token",
        "trigger_id": trigger_id or new_trigger_id(user_id),
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
    }
    if view is not None:
        payload["container"] = {"type": "view", "view_id": view.get("id", "V0FAKE")}
        payload["view"] = view
        payload["state"] = view.get("state", {"values": state_values or {}})
    else:
        payload["container"] = {"type": "message", "message_ts": message_ts, "channel_id": channel,
                                "is_ephemeral": is_ephemeral}
        payload["channel"] = {"id": channel, "name": channel_name}
        payload["message"] = message or {
            "bot_id": BOT_ID, "type": "message", "text": "signoff card", "user": BOT_USER_ID,
            "ts": message_ts, "app_id": api_app_id, "blocks": [], "team": team_id,
        }
        payload["state"] = {"values": state_values or {}}
        payload["response_url"] = response_url
    payload["actions"] = [action]
    return _interactive(payload, secret, timestamp)


def state_values(values: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``view.state.values`` from ``{block_id: {action_id: str | dict}}``; a str is a plain_text_input value."""
    return {
        block_id: {
            action_id: ({"type": "plain_text_input", "value": v} if isinstance(v, str) or v is None else v)
            for action_id, v in actions.items()
        }
        for block_id, actions in values.items()
    }


def view_submission(
    *,
    callback_id: str,
    values: dict[str, dict[str, Any]] | None = None,
    private_metadata: str = "",
    blocks: list[dict[str, Any]] | None = None,
    title: str = "signoff",
    view_id: str = "V0FAKE",
    view_hash: str = "1700000000.AbCdEfGh",
    user_id: str = "U0REVIEWER",
    user_name: str | None = None,
    team_id: str = TEAM_ID,
    response_urls: list[dict[str, Any]] | None = None,
    trigger_id: str | None = None,
    api_app_id: str = API_APP_ID,
    secret: str = SIGNING_SECRET,
    timestamp: int | None = None,
) -> SlackRequest:
    """A ``view_submission`` payload; ``values`` as for :func:`state_values`."""
    view = {
        "id": view_id,
        "team_id": team_id,
        "type": "modal",
        "blocks": blocks or [],
        "private_metadata": private_metadata,
        "callback_id": callback_id,
        "state": {"values": state_values(values or {})},
        "hash": view_hash,
        "title": {"type": "plain_text", "text": title},
        "clear_on_close": False,
        "notify_on_close": False,
        "close": {"type": "plain_text", "text": "Cancel"},
        "submit": {"type": "plain_text", "text": "Submit"},
        "previous_view_id": None,
        "root_view_id": view_id,
        "app_id": api_app_id,
        "external_id": "",
        "app_installed_team_id": team_id,
        "bot_id": BOT_ID,
    }
    payload = {
        "type": "view_submission",
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "user": _user(user_id, user_name, team_id),
        "api_app_id": api_app_id,
        "token": "verification-token",
        "trigger_id": trigger_id or new_trigger_id(user_id),
        "view": view,
        "response_urls": response_urls or [],
        "is_enterprise_install": False,
        "enterprise": None,
    }
    return _interactive(payload, secret, timestamp)


def slash_command(
    *,
    text: str = "",
    command: str = "/signoff",
    user_id: str = "U0REVIEWER",
    user_name: str | None = None,
    channel_id: str = "C0APPROVALS",
    channel_name: str = "approvals",
    team_id: str = TEAM_ID,
    team_domain: str = TEAM_DOMAIN,
    response_url: str = UNROUTED_RESPONSE_URL,
    trigger_id: str | None = None,
    api_app_id: str = API_APP_ID,
    secret: str = SIGNING_SECRET,
    timestamp: int | None = None,
) -> SlackRequest:
    """A slash command as plain form fields, in the order of ``payloads/slash_command.form.txt``."""
    fields = {
        "token": "verification-token",
        "team_id": team_id,
        "team_domain": team_domain,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name or user_id.lower(),
        "command": command,
        "text": text,
        "response_url": response_url,
        "trigger_id": trigger_id or new_trigger_id(user_id),
        "api_app_id": api_app_id,
    }
    body = urlencode(fields)
    return SlackRequest(body, signed_headers(secret, body, "application/x-www-form-urlencoded",
                                             timestamp=timestamp), fields)


def event_callback(
    event: dict[str, Any],
    *,
    team_id: str = TEAM_ID,
    api_app_id: str = API_APP_ID,
    event_id: str | None = None,
    event_time: int | None = None,
    authorizations: list[dict[str, Any]] | None = None,
    retry_num: int | None = None,
    retry_reason: str = "http_timeout",
    secret: str = SIGNING_SECRET,
    timestamp: int | None = None,
) -> SlackRequest:
    """An Events API ``event_callback`` envelope around ``event`` (JSON body). ``retry_num`` adds Slack's
    ``X-Slack-Retry-Num`` / ``X-Slack-Retry-Reason`` headers as on a redelivery."""
    envelope = {
        "type": "event_callback",
        "token": "verification-token",
        "team_id": team_id,
        "api_app_id": api_app_id,
        "event": event,
        "event_context": f"EC{next(_seq):09d}",
        "event_id": event_id or f"Ev{next(_seq):09d}",
        "event_time": int(time.time()) if event_time is None else event_time,
        "authorizations": authorizations or [{"enterprise_id": None, "team_id": team_id, "user_id": BOT_USER_ID,
                                              "is_bot": True, "is_enterprise_install": False}],
        "is_ext_shared_channel": False,
        "context_team_id": team_id,
        "context_enterprise_id": None,
    }
    body = json.dumps(envelope)
    headers = signed_headers(secret, body, "application/json", timestamp=timestamp)
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason
    return SlackRequest(body, headers, envelope)


def app_home_opened(user_id: str, *, tab: str = "home", view: dict[str, Any] | None = None) -> dict[str, Any]:
    """The inner ``app_home_opened`` event, for :func:`event_callback`."""
    event: dict[str, Any] = {"type": "app_home_opened", "user": user_id, "channel": f"D{user_id}",
                             "tab": tab, "event_ts": _action_ts()}
    if view is not None:
        event["view"] = view
    return event


def url_verification(challenge: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> SlackRequest:
    payload = {"token": "verification-token", "challenge": challenge, "type": "url_verification"}
    body = json.dumps(payload)
    return SlackRequest(body, signed_headers(secret, body, "application/json", timestamp=timestamp), payload)


async def post_signed(session: aiohttp.ClientSession, url: str, raw_body: str | bytes,
                      headers: dict[str, str]) -> SignedReply:
    """POST the raw body unchanged (the signature covers its exact bytes) and read the whole reply."""
    data = raw_body.encode() if isinstance(raw_body, str) else raw_body
    async with session.post(url, data=data, headers=headers) as resp:
        return SignedReply(resp.status, dict(resp.headers), await resp.text())
