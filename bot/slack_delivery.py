"""Slack work queued in the outbox: post each request's card once, then keep it up to date.

A card is an outbox row written with the request (guarantee 1): if Slack is down or the process dies, the
row is delivered after recovery or restart. ``slack.post`` rows have a unique key per request, and the
message's ``ts`` is recorded with a compare-and-set, so a request never gets a second card; every later
change is a ``chat.update`` rendered from the request's state at delivery time. Posts are paced to about one
per second per channel, and a 429's ``Retry-After`` is honoured.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import blocks
from bot.clock import Clock
from bot.effects import Change, OutboxRow
from bot.errors import NotFound
from bot.outbox import Defer, GiveUp, RetryLater
from bot.schedule_blocks import CARD_LINK
from bot.schedule_service import SLACK_MESSAGE
from bot.service import ApprovalService
from storage.models import OutboxItem

log = logging.getLogger("signoff.slack")

POST = "slack.post"
UPDATE = "slack.update"
MESSAGE = SLACK_MESSAGE  # digests, escalation notices, reminder and escalation replies in a card's thread
KINDS = (POST, UPDATE, MESSAGE)

# Errors that retrying cannot fix: the card is dead-lettered with an audit event at once.
PERMANENT = {"channel_not_found", "not_in_channel", "is_archived", "invalid_auth", "account_inactive",
             "token_revoked", "missing_scope", "invalid_blocks", "msg_too_long", "no_permission"}


class SlackEffects:
    """Plans the card for a new request and an update for every later change."""

    def plan(self, change: Change) -> list[OutboxRow]:
        req = change.request
        rid = req["id"]
        if not req.get("channel"):
            return []
        if change.kind == "created":
            # A request decided at submission keeps a channel only when a policy asks for an FYI card there.
            return [OutboxRow(kind=POST, key=f"{POST}:{rid}", request_id=rid, payload={"request_id": rid})]
        if change.kind in ("approved", "rejected") and (req.get("decision") or {}).get("by", {}).get("via") == "policy":
            return []  # decided at submission: the card it gets is already the decided one
        return [OutboxRow(kind=UPDATE, key=f"{UPDATE}:{rid}:{secrets.token_hex(8)}", request_id=rid,
                          payload={"request_id": rid, "change": change.kind})]


class ChannelPacer:
    """About one post per ``interval_s`` per channel from this process.

    Each queued card is given a slot; a card whose slot is more than a moment away goes back to the outbox
    until then (without counting an attempt), so a burst to one channel never blocks other channels' cards.
    A 429 pushes the channel's next slot past ``Retry-After``.
    """

    def __init__(self, interval_s: float = 1.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._monotonic = monotonic
        self._next: dict[str, float] = {}
        self._blocked_until: dict[str, float] = {}
        self._held: dict[object, tuple[str, float]] = {}

    def slot(self, key: object, channel: str) -> float:
        """Seconds until ``key`` may post to ``channel`` (0 = now); reserves the slot on first ask."""
        now = self._monotonic()
        blocked = self._blocked_until.get(channel, 0.0)
        held = self._held.get(key)
        if held is None or held[0] != channel or held[1] < blocked:
            at = max(self._next.get(channel, now), now, blocked)
            self._next[channel] = at + self.interval_s
            self._held[key] = (channel, at)
            held = self._held[key]
        return max(0.0, held[1] - now)

    def release(self, key: object) -> None:
        self._held.pop(key, None)

    def push_back(self, channel: str, seconds: float) -> None:
        until = self._monotonic() + seconds
        self._blocked_until[channel] = max(self._blocked_until.get(channel, 0.0), until)
        self._next[channel] = max(self._next.get(channel, 0.0), until)


class SlackDelivery:
    def __init__(self, *, client: AsyncWebClient, service: ApprovalService, clock: Clock,
                 pacer: ChannelPacer | None = None) -> None:
        self.client = client
        self.service = service
        self.clock = clock
        self.pacer = pacer or ChannelPacer()

    async def _load(self, item: OutboxItem) -> dict[str, Any] | None:
        try:
            return await self.service.get(request_id=item.payload["request_id"])
        except NotFound:
            return None

    async def post(self, item: OutboxItem) -> None:
        req = await self._load(item)
        if req is None or (req.get("slack") or {}).get("ts"):
            return  # gone, or already posted: never a second card
        channel = req["channel"]
        wait = self.pacer.slot(item.id, channel)
        if wait > 0.25:
            raise Defer(wait)
        await asyncio.sleep(wait)
        self.pacer.release(item.id)
        message = blocks.approval_card(req, now=self.clock.now())
        resp = await self._call(channel, self.client.chat_postMessage, channel=channel, text=message["text"],
                                blocks=message["blocks"], unfurl_links=False, unfurl_media=False)
        ts, posted_channel = resp["ts"], resp.get("channel") or channel
        permalink = None
        try:
            permalink = (await self.client.chat_getPermalink(channel=posted_channel, message_ts=ts)).get("permalink")
        except SlackApiError as e:
            log.info("chat.getPermalink failed for %s: %s", req["id"], e.response.get("error"))
        await self.service.set_slack_message(request_id=req["id"], channel=posted_channel, ts=ts,
                                             permalink=permalink)
        if req["status"] == "pending":
            return
        # Decided while the card was queued: show the decision straight away.
        await self.update(item)

    async def update(self, item: OutboxItem) -> None:
        req = await self._load(item)
        if req is None:
            return
        slack = req.get("slack") or {}
        if not slack.get("ts"):
            raise RetryLater("the card is not posted yet", delay_s=1.0)
        message = blocks.approval_card(req, now=self.clock.now())
        await self._call(slack["channel"], self.client.chat_update, channel=slack["channel"], ts=slack["ts"],
                         text=message["text"][:4000], blocks=message["blocks"])

    # --- slack.message: every message other than the card --------------------------------------------------

    async def message(self, item: OutboxItem) -> None:
        """Post ``{channel, text, blocks, thread_of, link_card}``: in the card's thread when ``thread_of`` names
        a request (waiting until its card is posted), with the card's permalink for ``CARD_LINK`` when
        ``link_card`` names one; paced per channel like cards."""
        p = item.payload
        channel, thread_ts = p["channel"], None
        text, blocks_ = p["text"], p.get("blocks")
        if p.get("thread_of"):
            card = await self._card(p["thread_of"])
            if card is None:
                return
            channel, thread_ts = card["channel"], card["ts"]
        if p.get("link_card"):
            card = await self._card(p["link_card"])
            if card is None:
                return
            link = card.get("permalink") or await self._permalink(card)
            text, blocks_ = _fill_link(text, link), _fill_link(blocks_, link)
        wait = self.pacer.slot(item.id, channel)
        if wait > 0.25:
            raise Defer(wait)
        await asyncio.sleep(wait)
        self.pacer.release(item.id)
        extra = {"thread_ts": thread_ts} if thread_ts else {}
        await self._call(channel, self.client.chat_postMessage, channel=channel, text=text, blocks=blocks_,
                         unfurl_links=False, unfurl_media=False, **extra)

    async def _card(self, request_id: str) -> dict[str, Any] | None:
        """Where the request's card is (``{channel, ts, permalink}``); RetryLater until it is posted."""
        try:
            req = await self.service.get(request_id=request_id)
        except NotFound:
            return None
        slack = req.get("slack") or {}
        if not slack.get("ts"):
            raise RetryLater(f"the card of {request_id} is not posted yet")
        return dict(slack)

    async def _permalink(self, card: dict[str, Any]) -> str:
        try:
            resp = await self.client.chat_getPermalink(channel=card["channel"], message_ts=card["ts"])
        except SlackApiError as e:
            raise RetryLater(f"chat.getPermalink failed: {e.response.get('error')}") from e
        return str(resp["permalink"])

    async def _call(self, pace_channel: str, method: Any, **kwargs: Any) -> Any:
        try:
            return await method(**kwargs)
        except SlackApiError as e:
            error = e.response.get("error", "unknown")
            if e.response.status_code == 429:
                retry_after = float(e.response.headers.get("Retry-After", "1") or 1)
                self.pacer.push_back(pace_channel, retry_after)
                raise RetryLater(f"Slack rate limit on {pace_channel}", delay_s=retry_after) from e
            if error in PERMANENT:
                raise GiveUp(f"Slack refused: {error}") from e
            raise RetryLater(f"Slack error: {error}") from e


def _fill_link(value: Any, link: str) -> Any:
    """``value`` with ``CARD_LINK`` replaced by the card's permalink."""
    if isinstance(value, str):
        return value.replace(CARD_LINK, link)
    if isinstance(value, list):
        return [_fill_link(v, link) for v in value]
    if isinstance(value, dict):
        return {k: _fill_link(v, link) for k, v in value.items()}
    return value
