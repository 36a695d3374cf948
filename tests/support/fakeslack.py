"""A fake Slack Web API: a real aiohttp server on 127.0.0.1 with an ephemeral port.

    async with FakeSlack(usergroups={"S0REVIEWERS": ["U1"]}, users={"U1": {"name": "dana"}}) as slack:
        client = AsyncWebClient(token=slack.token, base_url=slack.api_url)   # api_url == slack.url + "/api/"

slack_sdk joins ``base_url`` and the method with ``urljoin`` (after appending a missing ``/``), so the base URL
must end in ``/api/``: ``slack.api_url`` is exactly that. Implemented methods: auth.test, chat.postMessage,
chat.update, chat.postEphemeral, chat.getPermalink, views.open/update/push/publish, usergroups.users.list,
users.info, conversations.open; anything else answers ``unknown_method``. ``slack.response_url(...)`` hands out
``<url>/response_url/<n>`` endpoints for interactive payloads.

Behaviour worth knowing in tests:
- Token: only ``slack.token`` (``Authorization: Bearer`` or a ``token`` field) is valid: ``not_authed`` /
  ``invalid_auth`` otherwise.
- Block Kit limits (tests/support/blockkit_limits.py) are checked on every message and view; a breach answers
  ``invalid_blocks`` (messages) or ``invalid_arguments`` (views, as Slack does), both with an ``errors`` list,
  and is kept in ``slack.breaches`` (``slack.assert_no_breaches()``).
- chat.postMessage is rate limited per channel (token bucket, ``post_rate`` per second, ``post_burst`` deep):
  HTTP 429, ``Retry-After``, ``{"ok": false, "error": "ratelimited"}``; ``slack.ratelimited`` counts every 429.
- Trigger ids must come from ``slack_requests.new_trigger_id`` (the builders' default) or ``slack.trigger(user)``;
  they expire after ``trigger_ttl`` seconds (``expired_trigger_id``) and work once (``exchanged_trigger_id``).
- users.info and conversations.open know only the configured ``users`` (plus the bot user).
- ``Call.time`` is ``time.monotonic()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.blockkit_limits import (
    CHAT_UPDATE_TEXT_MAX,
    MESSAGE_TEXT_TRUNCATE,
    check_message_blocks,
    check_view,
)
from tests.support.slack_requests import (
    API_APP_ID,
    BOT_ID,
    BOT_USER_ID,
    TEAM_ID,
    new_trigger_id,
    parse_trigger_id,
)

_JSON_FIELDS = ("blocks", "attachments", "view", "metadata")
Reply = tuple[int, dict[str, Any], dict[str, str]]


class SlackError(Exception):
    """An ``ok: false`` answer from a method implementation."""

    def __init__(self, error: str, status: int = 200, **extra: Any) -> None:
        super().__init__(error)
        self.error, self.status, self.extra = error, status, extra


@dataclass(frozen=True)
class Call:
    method: str                  # "chat.postMessage", or "response_url" for a post to a response_url
    params: dict[str, Any]       # query + form/JSON body, with blocks/view decoded
    time: float                  # time.monotonic() on arrival
    status: int                  # HTTP status answered; 0 = connection dropped (down("reset"))
    response: dict[str, Any]     # JSON body answered
    path: str

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.response.get("ok"))


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None = None
    metadata: dict[str, Any] | None = None
    via: str = "chat.postMessage"
    deleted: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)   # earlier versions: {"text", "blocks"}

    def to_payload(self) -> dict[str, Any]:
        """The message as Slack echoes it in a block_actions payload."""
        out: dict[str, Any] = {"type": "message", "subtype": "bot_message", "text": self.text, "user": BOT_USER_ID,
               "bot_id": BOT_ID, "app_id": API_APP_ID, "ts": self.ts, "team": TEAM_ID,
               "blocks": copy.deepcopy(self.blocks)}
        if self.thread_ts:
            out["thread_ts"] = self.thread_ts
        if self.metadata:
            out["metadata"] = self.metadata
        return out


@dataclass
class Ephemeral:
    channel: str
    user: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    via: str                     # "chat.postEphemeral" or "response_url"
    deleted: bool = False
    replaced: int = 0            # how often replace_original rewrote it


@dataclass(frozen=True)
class Breach:
    method: str
    errors: list[str]
    params: dict[str, Any]


@dataclass
class _Fault:
    status: int
    times: int | None
    retry_after: int | None
    error: str


@dataclass
class _ResponseUrl:
    channel: str
    user: str
    message_ts: str | None
    uses: int = 0
    last: Ephemeral | None = None


class FakeSlack:
    def __init__(
        self,
        *,
        token: str = "xoxb-signoff-fake-token",
        app_token: str = "xapp-signoff-fake-token",
        usergroups: Mapping[str, list[str]] | None = None,
        users: Mapping[str, Mapping[str, Any]] | None = None,
        post_rate: float | None = 1.0,
        post_burst: int = 3,
        trigger_ttl: float = 3.0,
        response_url_uses: int = 5,
        team_id: str = TEAM_ID,
        bot_user_id: str = BOT_USER_ID,
        bot_id: str = BOT_ID,
    ) -> None:
        self.token = token
        self.app_token = app_token
        self._sockets: list[web.WebSocketResponse] = []
        self._socket_acks: dict[str, dict[str, Any]] = {}
        self.socket_connected = asyncio.Event()
        self.team_id, self.bot_user_id, self.bot_id = team_id, bot_user_id, bot_id
        self.usergroups: dict[str, list[str]] = {k: list(v) for k, v in (usergroups or {}).items()}
        self.users: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (users or {}).items()}
        self.trigger_ttl, self.response_url_uses = trigger_ttl, response_url_uses
        self.post_rate, self.post_burst = post_rate, post_burst
        self.breaches: list[Breach] = []
        self.ratelimited = 0
        self._calls: list[Call] = []
        self._changed = asyncio.Event()
        self._messages: dict[str, list[Message]] = {}
        self._ephemerals: list[Ephemeral] = []
        self._views: dict[str, dict[str, Any]] = {}
        self._view_user: dict[str, str] = {}
        self._stacks: dict[str, list[str]] = {}
        self._home: dict[str, str] = {}
        self._used_triggers: set[str] = set()
        self._response_urls: dict[int, _ResponseUrl] = {}
        self._buckets: dict[str, tuple[float, float]] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._hangs: dict[str, list[tuple[float, int | None]]] = {}
        self._down_mode: str | None = None
        self._last_ts = 0.0
        self._runner: web.AppRunner | None = None
        self._wake = asyncio.Event()
        self._port = 0
        self._methods: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.getPermalink": self._get_permalink,
            "views.open": self._views_open,
            "views.push": self._views_push,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "usergroups.users.list": self._usergroup_users,
            "users.info": self._users_info,
            "conversations.open": self._conversations_open,
        }

    # --- lifecycle -------------------------------------------------------------------------------------

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/response_url/{n}", self._handle_response_url)
        app.router.add_get("/socket", self._handle_socket)
        self._wake = asyncio.Event()
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self._port)
        await site.start()
        self._runner = runner
        self._port = runner.addresses[0][1]

    async def stop(self) -> None:
        self._wake.set()            # release hanging handlers so shutdown does not wait for them
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``; stays the same across ``down()`` / ``up()``."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_url(self) -> str:
        """The ``base_url`` for ``AsyncWebClient`` / ``SLACK_API_URL``."""
        return self.url + "/api/"

    # --- Socket Mode -----------------------------------------------------------------------------------

    async def _handle_socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": len(self._sockets),
                            "connection_info": {"app_id": "A0SIGNOFF"}, "debug_info": {"host": "fake"}})
        self.socket_connected.set()
        try:
            async for msg in ws:
                if msg.type == web.WSMsgType.TEXT:
                    data = json.loads(msg.data)
                    if "envelope_id" in data:
                        self._socket_acks[data["envelope_id"]] = data
                        self._changed.set()
        finally:
            self._sockets.remove(ws)
        return ws

    async def socket_send(self, kind: str, payload: dict[str, Any]) -> str:
        """Push an envelope (``interactive``, ``slash_commands`` or ``events_api``) to the connected app."""
        await asyncio.wait_for(self.socket_connected.wait(), timeout=10)
        envelope_id = f"env-{len(self._socket_acks)}-{time.monotonic_ns()}"
        await self._sockets[-1].send_json({"envelope_id": envelope_id, "type": kind, "payload": payload,
                                           "accepts_response_payload": kind != "events_api", "retry_attempt": 0,
                                           "retry_reason": ""})
        return envelope_id

    async def socket_ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """Wait for the app's acknowledgement of an envelope."""
        deadline = time.monotonic() + timeout
        while envelope_id not in self._socket_acks:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no ack for {envelope_id}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=0.05)
        return self._socket_acks[envelope_id]

    # --- fault injection -------------------------------------------------------------------------------

    def fail(self, method: str, status: int = 500, *, times: int | None = 1, retry_after: int | None = None,
             error: str | None = None) -> None:
        """The next ``times`` calls of ``method`` (``"*"`` = any, ``"response_url"``) answer ``status``;
        ``times=None`` until ``clear_faults()``. A 429 carries ``Retry-After`` (default 1)."""
        if status == 429 and retry_after is None:
            retry_after = 1
        default_error = {429: "ratelimited", 503: "service_unavailable"}.get(status, "internal_error")
        self._faults.setdefault(method, []).append(_Fault(status, times, retry_after, error or default_error))

    def hang(self, method: str, seconds: float, *, times: int | None = 1) -> None:
        """Delay the next ``times`` calls of ``method`` by ``seconds`` before answering."""
        self._hangs.setdefault(method, []).append((seconds, times))

    def clear_faults(self) -> None:
        self._faults.clear()
        self._hangs.clear()

    async def down(self, mode: str = "refuse") -> None:
        """``refuse``: close the listening socket and every open connection (connection refused);
        ``reset``: accept and drop connections without an answer; ``503``: answer 503 to everything."""
        if mode not in ("refuse", "reset", "503"):
            raise ValueError(f"unknown down mode {mode!r}")
        self._down_mode = mode
        if mode == "refuse":
            await self.stop()

    async def up(self) -> None:
        self._down_mode = None
        if self._runner is None:
            await self.start()

    def set_rate_limit(self, post_rate: float | None, post_burst: int = 3) -> None:
        self.post_rate, self.post_burst = post_rate, post_burst
        self._buckets.clear()

    def trigger(self, user: str) -> str:
        return new_trigger_id(user)

    # --- inspection ------------------------------------------------------------------------------------

    def calls(self, method: str | None = None, *, ok: bool | None = None) -> list[Call]:
        return [c for c in self._calls
                if (method is None or c.method == method) and (ok is None or c.ok == ok)]

    async def wait_for(self, method: str, count: int = 1, timeout: float = 5.0, *,
                       ok: bool | None = None) -> list[Call]:
        """Wait until at least ``count`` calls of ``method`` arrived; return them all."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            changed = self._changed
            found = self.calls(method, ok=ok)
            if len(found) >= count:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0:
                seen = [f"{c.method}:{c.status}" for c in self._calls]
                raise AssertionError(f"expected {count} {method} call(s) within {timeout}s, got {len(found)}; "
                                     f"all calls: {seen}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    def assert_no_breaches(self) -> None:
        assert not self.breaches, "Block Kit limits breached: " + "; ".join(
            f"{b.method}: {b.errors}" for b in self.breaches)

    def messages_in(self, channel: str, *, include_deleted: bool = False) -> list[Message]:
        """Messages in ``channel`` (thread replies included), oldest first."""
        return [m for m in self._messages.get(channel, []) if include_deleted or not m.deleted]

    def message(self, channel: str, ts: str) -> Message:
        for m in self._messages.get(channel, []):
            if m.ts == ts:
                return m
        raise KeyError(f"no message {ts} in {channel}")

    def replies(self, channel: str, thread_ts: str) -> list[Message]:
        return [m for m in self.messages_in(channel) if m.thread_ts == thread_ts and m.ts != thread_ts]

    def ephemerals(self, *, user: str | None = None, channel: str | None = None) -> list[Ephemeral]:
        return [e for e in self._ephemerals if not e.deleted and (user is None or e.user == user)
                and (channel is None or e.channel == channel)]

    def dm_channel(self, user: str) -> str:
        """The IM channel id conversations.open answers for ``user``."""
        return "D" + user

    def modal_stack(self, user: str) -> list[dict[str, Any]]:
        """The modals currently open for ``user``, root first."""
        return [self._views[v] for v in self._stacks.get(user, [])]

    def close_modals(self, user: str) -> None:
        """What Slack does when a submission is acked without a response_action."""
        self._stacks.pop(user, None)

    def home_view(self, user: str) -> dict[str, Any] | None:
        view_id = self._home.get(user)
        return self._views[view_id] if view_id else None

    def views_for(self, user: str) -> list[dict[str, Any]]:
        """Every view (modal or home) ever shown to ``user``, in their latest state."""
        return [v for vid, v in self._views.items() if self._view_user[vid] == user]

    def response_url(self, *, channel: str = "C0APPROVALS", user: str = "U0REVIEWER",
                     message_ts: str | None = None) -> str:
        """A response_url for a payload from ``user`` in ``channel``. With ``message_ts`` (the clicked channel
        message or ephemeral) ``replace_original`` / ``delete_original`` act on that message; without, on the
        last ephemeral posted through this URL (the slash-command case)."""
        n = len(self._response_urls) + 1
        self._response_urls[n] = _ResponseUrl(channel, user, message_ts)
        return f"{self.url}/response_url/{n}"

    def response_posts(self, url: str | None = None) -> list[Call]:
        calls = self.calls("response_url")
        return [c for c in calls if url is None or url.endswith(c.path)]

    # --- plumbing ----------------------------------------------------------------------------------------

    def _record(self, method: str, params: dict[str, Any], status: int, body: dict[str, Any], path: str) -> None:
        self._calls.append(Call(method, params, time.monotonic(), status, body, path))
        if status == 429:
            self.ratelimited += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _next_ts(self) -> str:
        self._last_ts = max(time.time(), self._last_ts + 0.000001)
        return f"{self._last_ts:.6f}"

    def _hash(self) -> str:
        return f"{int(time.time())}.{secrets.token_hex(4)}"

    async def _gate(self, request: web.Request, method: str, params: dict[str, Any]) -> Reply | None:
        """Down modes, hangs and injected failures, in that order; None lets the call through."""
        if self._down_mode == "reset":
            if request.transport is not None:
                request.transport.abort()
            return 0, {"ok": False, "error": "connection_reset"}, {}
        if self._down_mode == "503":
            return 503, {"ok": False, "error": "service_unavailable"}, {}
        for key in (method, "*"):
            hangs = self._hangs.get(key)
            if hangs:
                seconds, times = hangs[0]
                if times is not None:
                    hangs[0] = (seconds, times - 1)
                    if times - 1 <= 0:
                        hangs.pop(0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), seconds)
                break
        for key in (method, "*"):
            faults = self._faults.get(key)
            if faults:
                fault = faults[0]
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        faults.pop(0)
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                return fault.status, {"ok": False, "error": fault.error}, headers
        return None

    def _respond(self, method: str, params: dict[str, Any], path: str, reply: Reply) -> web.StreamResponse:
        status, body, headers = reply
        self._record(method, params, status, body, path)
        return web.json_response(body, status=status or 200, headers=headers)

    async def _read_params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    raise SlackError("invalid_json") from None
                if isinstance(body, dict):
                    params.update(body)
            elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
                form = await request.post()
                params.update({k: v for k, v in form.items() if isinstance(v, str)})
        for key in _JSON_FIELDS:
            if isinstance(params.get(key), str) and params[key]:
                with contextlib.suppress(ValueError):
                    params[key] = json.loads(params[key])
        return params

    @staticmethod
    def _token(request: web.Request, params: dict[str, Any]) -> str | None:
        """The bearer token, else a ``token`` field (which is then not recorded with the params)."""
        field_token = params.pop("token", None)
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return header.removeprefix("Bearer ").strip()
        return str(field_token) if field_token else None

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        try:
            params = await self._read_params(request)
        except SlackError as e:
            return self._respond(method, {}, request.path, (e.status, {"ok": False, "error": e.error}, {}))
        token = self._token(request, params)
        reply = await self._gate(request, method, params)
        if reply is None:
            reply = await self._dispatch(method, params, token)
        return self._respond(method, params, request.path, reply)

    async def _dispatch(self, method: str, params: dict[str, Any], token: str | None) -> Reply:
        if method == "apps.connections.open":  # Socket Mode: the app-level token, not the bot token
            if token != self.app_token:
                return 200, {"ok": False, "error": "invalid_auth" if token else "not_authed"}, {}
            return 200, {"ok": True, "url": self.url.replace("http://", "ws://") + "/socket"}, {}
        auth_error = "not_authed" if not token else None if token == self.token else "invalid_auth"
        if auth_error:
            return 200, {"ok": False, "error": auth_error}, {}
        impl = self._methods.get(method)
        if impl is None:
            return 200, {"ok": False, "error": "unknown_method"}, {}
        if method == "chat.postMessage":
            wait = self._take_post_token(str(params.get("channel", "")))
            if wait is not None:
                return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(wait)}
        try:
            body = await impl(params)
        except SlackError as e:
            if e.error in ("invalid_blocks", "invalid_arguments"):
                self.breaches.append(Breach(method, e.extra.get("errors", []), params))
            return e.status, {"ok": False, "error": e.error, **e.extra}, {}
        headers = {"X-OAuth-Scopes": "chat:write,chat:write.public,commands,users:read,usergroups:read,im:write"}
        return 200, {"ok": True, **body}, headers if method == "auth.test" else {}

    def _take_post_token(self, channel: str) -> int | None:
        """Token bucket per channel; None when a token was taken, else whole seconds to wait (≥ 1)."""
        if self.post_rate is None:
            return None
        now = time.monotonic()
        tokens, last = self._buckets.get(channel, (float(self.post_burst), now))
        tokens = min(float(self.post_burst), tokens + (now - last) * self.post_rate)
        if tokens >= 1.0:
            self._buckets[channel] = (tokens - 1.0, now)
            return None
        self._buckets[channel] = (tokens, now)
        return max(1, math.ceil((1.0 - tokens) / self.post_rate))

    # --- chat --------------------------------------------------------------------------------------------

    @staticmethod
    def _require(params: dict[str, Any], *names: str) -> None:
        for name in names:
            if not params.get(name):
                raise SlackError("invalid_arguments", response_metadata={"messages": [f"missing {name}"]})

    @staticmethod
    def _blocks(params: dict[str, Any], *, status: int = 200) -> list[dict[str, Any]] | None:
        if "blocks" not in params:
            return None
        blocks = params["blocks"]
        errors = check_message_blocks(blocks)
        if errors:
            raise SlackError("invalid_blocks", status, errors=errors, response_metadata={"messages": errors})
        return list(blocks)

    async def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"url": "https://signoff-test.slack.com/", "team": "signoff test", "user": "signoff",
                "team_id": self.team_id, "user_id": self.bot_user_id, "bot_id": self.bot_id,
                "is_enterprise_install": False}

    async def _post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        self._require(params, "channel")
        blocks = self._blocks(params)
        text = str(params.get("text") or "")
        if not text and not blocks:
            raise SlackError("no_text")
        warnings = []
        if len(text) > MESSAGE_TEXT_TRUNCATE:
            text, warnings = text[:MESSAGE_TEXT_TRUNCATE], ["message_truncated"]
        channel = str(params["channel"])
        msg = Message(channel, self._next_ts(), text, blocks or [], thread_ts=params.get("thread_ts") or None,
                      metadata=params.get("metadata") or None)
        self._messages.setdefault(channel, []).append(msg)
        out: dict[str, Any] = {"channel": channel, "ts": msg.ts, "message": msg.to_payload()}
        if warnings:
            out["response_metadata"] = {"warnings": warnings}
        return out

    async def _update(self, params: dict[str, Any]) -> dict[str, Any]:
        self._require(params, "channel", "ts")
        channel, ts = str(params["channel"]), str(params["ts"])
        try:
            msg = self.message(channel, ts)
        except KeyError:
            raise SlackError("message_not_found") from None
        if msg.deleted:
            raise SlackError("message_not_found")
        text = params.get("text")
        if text is not None and len(str(text)) > CHAT_UPDATE_TEXT_MAX:
            raise SlackError("msg_too_long")
        blocks = self._blocks(params)
        msg.history.append({"text": msg.text, "blocks": msg.blocks})
        if text is not None:
            msg.text = str(text)
        if blocks is not None:      # omitted blocks are kept; [] removes them (chat.update docs)
            msg.blocks = blocks
        return {"channel": channel, "ts": ts, "text": msg.text, "message": msg.to_payload()}

    async def _post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        self._require(params, "channel", "user")
        blocks = self._blocks(params)
        text = str(params.get("text") or "")
        if not text and not blocks:
            raise SlackError("no_text")
        eph = Ephemeral(str(params["channel"]), str(params["user"]), self._next_ts(), text, blocks or [],
                        via="chat.postEphemeral")
        self._ephemerals.append(eph)
        return {"message_ts": eph.ts}

    async def _get_permalink(self, params: dict[str, Any]) -> dict[str, Any]:
        self._require(params, "channel", "message_ts")
        channel, ts = str(params["channel"]), str(params["message_ts"])
        try:
            self.message(channel, ts)
        except KeyError:
            raise SlackError("message_not_found") from None
        return {"channel": channel,
                "permalink": f"https://signoff-test.slack.com/archives/{channel}/p{ts.replace('.', '')}"}

    # --- views -------------------------------------------------------------------------------------------

    def _trigger_user(self, params: dict[str, Any]) -> str:
        trigger_id = str(params.get("trigger_id") or "")
        parsed = parse_trigger_id(trigger_id)
        if parsed is None:
            raise SlackError("invalid_trigger_id")
        issued, user = parsed
        if trigger_id in self._used_triggers:
            raise SlackError("exchanged_trigger_id")
        if time.time() - issued > self.trigger_ttl:
            raise SlackError("expired_trigger_id")
        self._used_triggers.add(trigger_id)
        return user

    def _checked_view(self, params: dict[str, Any], kind: str) -> dict[str, Any]:
        view = params.get("view")
        if not isinstance(view, dict):
            raise SlackError("invalid_arguments", response_metadata={"messages": ["missing view"]})
        errors = check_view(view)
        if not errors and view.get("type") != kind:
            errors = [f"must be {kind} [json-pointer:/view/type]"]
        if errors:
            raise SlackError("invalid_arguments", errors=errors, response_metadata={"messages": errors})
        return view

    def _store_view(self, user: str, view: dict[str, Any], *, view_id: str | None = None,
                    root: str | None = None, previous: str | None = None) -> dict[str, Any]:
        view_id = view_id or f"V{secrets.token_hex(5).upper()}"
        stored = {
            "id": view_id, "team_id": self.team_id, "type": view["type"], "blocks": view.get("blocks", []),
            "private_metadata": view.get("private_metadata", ""), "callback_id": view.get("callback_id", ""),
            "state": {"values": {}}, "hash": self._hash(), "title": view.get("title"),
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "close": view.get("close"), "submit": view.get("submit"), "previous_view_id": previous,
            "root_view_id": root or view_id, "app_id": API_APP_ID, "external_id": view.get("external_id", ""),
            "app_installed_team_id": self.team_id, "bot_id": self.bot_id,
        }
        self._views[view_id] = stored
        self._view_user[view_id] = user
        return stored

    async def _views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        view = self._checked_view(params, "modal")
        user = self._trigger_user(params)
        stored = self._store_view(user, view)
        self._stacks[user] = [stored["id"]]
        return {"view": stored}

    async def _views_push(self, params: dict[str, Any]) -> dict[str, Any]:
        view = self._checked_view(params, "modal")
        user = self._trigger_user(params)
        stack = self._stacks.setdefault(user, [])
        if len(stack) >= 3:
            raise SlackError("push_limit_reached")
        stored = self._store_view(user, view, root=stack[0] if stack else None,
                                  previous=stack[-1] if stack else None)
        stack.append(stored["id"])
        return {"view": stored}

    async def _views_update(self, params: dict[str, Any]) -> dict[str, Any]:
        view_id = params.get("view_id")
        if not view_id and params.get("external_id"):
            view_id = next((vid for vid, v in self._views.items() if v["external_id"] == params["external_id"]),
                           None)
        if not view_id or view_id not in self._views:
            raise SlackError("not_found")
        current = self._views[view_id]
        view = self._checked_view(params, current["type"])
        if params.get("hash") and params["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        stored = self._store_view(self._view_user[view_id], view, view_id=view_id, root=current["root_view_id"],
                                  previous=current["previous_view_id"])
        return {"view": stored}

    async def _views_publish(self, params: dict[str, Any]) -> dict[str, Any]:
        self._require(params, "user_id")
        view = self._checked_view(params, "home")
        user = str(params["user_id"])
        current = self.home_view(user)
        if current is not None and params.get("hash") and params["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        stored = self._store_view(user, view, view_id=current["id"] if current else None)
        self._home[user] = stored["id"]
        return {"view": stored}

    # --- users and groups ----------------------------------------------------------------------------------

    async def _usergroup_users(self, params: dict[str, Any]) -> dict[str, Any]:
        group = str(params.get("usergroup") or "")
        if group not in self.usergroups:
            raise SlackError("no_such_subteam")
        return {"users": list(self.usergroups[group])}

    def _user_object(self, user_id: str) -> dict[str, Any]:
        if user_id == self.bot_user_id:
            overrides: dict[str, Any] = {"name": "signoff", "real_name": "signoff", "is_bot": True}
        elif user_id in self.users:
            overrides = self.users[user_id]
        else:
            raise SlackError("user_not_found")
        name = overrides.get("name", user_id.lower())
        real_name = overrides.get("real_name", name.title())
        profile = {"display_name": name, "display_name_normalized": name, "real_name": real_name,
                   "real_name_normalized": real_name, "image_48": "https://example.invalid/a.png",
                   **overrides.get("profile", {})}
        user = {"id": user_id, "team_id": self.team_id, "name": name, "deleted": False, "real_name": real_name,
                "tz": "Europe/Berlin", "tz_label": "Central European Time", "tz_offset": 3600,
                "is_bot": False, "is_app_user": False, **overrides}
        user["profile"] = profile
        return user

    async def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"user": self._user_object(str(params.get("user") or ""))}

    async def _conversations_open(self, params: dict[str, Any]) -> dict[str, Any]:
        users = [u for u in str(params.get("users") or "").split(",") if u]
        if not users:
            raise SlackError("users_list_not_supplied")
        for user in users:
            self._user_object(user)
        channel_id = self.dm_channel(users[0]) if len(users) == 1 else "G" + "".join(sorted(users))[:20]
        return {"channel": {"id": channel_id}}

    # --- response_url --------------------------------------------------------------------------------------

    async def _handle_response_url(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        params: dict[str, Any] = body if isinstance(body, dict) else {}
        reply = await self._gate(request, "response_url", params)
        if reply is None:
            try:
                self._response_post(int(request.match_info["n"]), params, valid_json=isinstance(body, dict))
                reply = 200, {"ok": True}, {}
            except SlackError as e:
                if e.error == "invalid_blocks":
                    self.breaches.append(Breach("response_url", e.extra.get("errors", []), params))
                reply = e.status, {"ok": False, "error": e.error, **e.extra}, {}
        return self._respond("response_url", params, request.path, reply)

    def _response_post(self, n: int, params: dict[str, Any], *, valid_json: bool) -> None:
        target = self._response_urls.get(n)
        if target is None:
            raise SlackError("expired_url", status=404)
        if not valid_json:
            raise SlackError("invalid_payload", status=400)
        if target.uses >= self.response_url_uses:
            raise SlackError("used_url", status=404)
        target.uses += 1
        original = self._original(target)
        if params.get("delete_original"):
            if original is None:
                raise SlackError("message_not_found", status=404)
            original.deleted = True
            return
        blocks = self._blocks(params, status=400)
        text = str(params.get("text") or "")
        if params.get("replace_original") and original is not None:
            if isinstance(original, Message):
                original.history.append({"text": original.text, "blocks": original.blocks})
            else:
                original.replaced += 1
            original.text = text
            original.blocks = blocks or []
            return
        if params.get("response_type") == "in_channel":
            msg = Message(target.channel, self._next_ts(), text, blocks or [],
                          thread_ts=params.get("thread_ts") or None, via="response_url")
            self._messages.setdefault(target.channel, []).append(msg)
            return
        eph = Ephemeral(target.channel, target.user, self._next_ts(), text, blocks or [], via="response_url")
        self._ephemerals.append(eph)
        target.last = eph

    def _original(self, target: _ResponseUrl) -> Message | Ephemeral | None:
        if target.message_ts is not None:
            for m in self._messages.get(target.channel, []):
                if m.ts == target.message_ts and not m.deleted:
                    return m
            for e in self._ephemerals:
                if e.ts == target.message_ts and not e.deleted:
                    return e
            return None
        return target.last if target.last is not None and not target.last.deleted else None
