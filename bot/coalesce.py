"""Cards on the outbox, with bursts coalesced: the handlers of ``slack.post``, ``slack.update`` and ``slack.batch``.

Slack takes about one message per second per channel. When more than ``slack.coalesce_after`` requests for one
channel wait for their card, the oldest of them (up to what one card lists) become one batch card instead of a
card each; every item stays decidable on its own. A ``slack.post`` row whose channel has other cards waiting is
held for up to ``slack.coalesce_window_s`` after its request arrived, so the rest of a burst can join it; a
request that arrives alone is posted at once. Single cards are posted and updated by ``SlackDelivery``; batch
cards here, paced by the same per-channel pacer and honouring ``Retry-After`` the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from slack_sdk.errors import SlackApiError

from bot.batches import BatchService, CardTarget
from bot.blocks_batch import ITEMS_PER_MESSAGE, batch_message, part_of
from bot.clock import Clock
from bot.config import SlackConfig
from bot.outbox import Defer, RetryLater
from bot.slack_delivery import SlackDelivery
from storage.models import OutboxItem

log = logging.getLogger("signoff.slack")


class CardDelivery:
    def __init__(self, *, delivery: SlackDelivery, batches: BatchService, config: SlackConfig, clock: Clock,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.delivery = delivery
        self.batches = batches
        self.config = config
        self.clock = clock
        self._monotonic = monotonic
        self._channel_locks: dict[str, asyncio.Lock] = {}
        self._part_locks: dict[tuple[str, int], asyncio.Lock] = {}
        self._rendered: dict[tuple[str, int], float] = {}

    # --- slack.post: one request's card, unless its channel has a burst ------------------------------------------

    async def post(self, item: OutboxItem) -> None:
        target = await self.batches.card_target(request_id=item.payload["request_id"])
        if target is None or target.slack_ts or target.batch_id:
            self.delivery.pacer.release(item.id)  # a slot it held while deferred is not needed any more
            return  # gone, posted, or listed on a batch card (posted by that batch's own rows)
        if target.status != "pending" or not target.channel:
            await self.delivery.post(item)
            return
        lock = self._channel_locks.setdefault(target.channel, asyncio.Lock())
        async with lock:  # one decision at a time per channel: post alone, hold, or coalesce
            hold = await self._coalesce_or_hold(target)
            if hold is None:
                self.delivery.pacer.release(item.id)
                return
            if hold > 0:
                raise Defer(hold)
            await self.delivery.post(item)

    async def _coalesce_or_hold(self, target: CardTarget) -> float | None:
        """None: the request is on a batch card now; 0: post its own card; > 0: hold it that many seconds."""
        assert target.channel is not None
        after, window = self.config.coalesce_after, self.config.coalesce_window_s
        for _ in range(5):
            current = await self.batches.card_target(request_id=target.request_id)
            if current is None or current.slack_ts or current.batch_id:
                return None  # on a batch card now (formed by this worker while we queued, or by another)
            waiting = await self.batches.waiting_for_card(channel=target.channel, limit=after + 1)
            if len(waiting) <= after:
                break
            await self.batches.coalesce(channel=target.channel, more_than=after, limit=ITEMS_PER_MESSAGE)
        else:
            return 0.0  # newer than five full batch cards: its own card, paced like any other
        age = (self.clock.now() - target.created_at).total_seconds()
        if len(waiting) > 1 and age < window:
            return window - age  # a burst may be arriving: give the rest of it a moment to join
        return 0.0

    # --- slack.update: re-render whichever card shows the request -------------------------------------------------

    async def update(self, item: OutboxItem) -> None:
        started = self._monotonic()
        target = await self.batches.card_target(request_id=item.payload["request_id"])
        if target is None:
            return
        if target.batch_id is None:
            await self.delivery.update(item)
            return
        view = await self.batches.card_view(batch_id=target.batch_id)
        if view is None:
            return
        batch, posted = view
        ids = [r["id"] for r in batch["requests"]]
        part = part_of(ids.index(target.request_id)) if target.request_id in ids else 0
        for p in sorted({0, part}):
            if p not in posted:
                raise RetryLater("the batch card is not posted yet", delay_s=1.0)
            await self._refresh(target.batch_id, p, started)

    async def _refresh(self, batch_id: str, part: int, started: float) -> None:
        """chat.update one message of a batch card, unless a render that began after this change was committed
        (``started`` is after the outbox row was claimed) already showed it: an Approve all that decides 50
        items costs a couple of updates, not 50."""
        key = (batch_id, part)
        async with self._part_locks.setdefault(key, asyncio.Lock()):
            if self._rendered.get(key, float("-inf")) > started:
                return
            begun = self._monotonic()
            view = await self.batches.card_view(batch_id=batch_id)
            if view is None or part not in view[1]:
                return
            batch, posted = view
            where = posted[part]
            message = batch_message(batch, part=part, now=self.clock.now())
            await self.delivery._call(where.channel, self.delivery.client.chat_update, channel=where.channel,
                                      ts=where.ts, text=message["text"][:4000], blocks=message["blocks"])
            self._rendered[key] = max(self._rendered.get(key, float("-inf")), begun)
        self._forget_old_renders()

    def _forget_old_renders(self, keep_s: float = 600.0, above: int = 4096) -> None:
        """Render times only matter while a change's rows are being delivered; keep memory bounded."""
        if len(self._rendered) <= above:
            return
        cutoff = self._monotonic() - keep_s
        for key in [k for k, at in self._rendered.items() if at < cutoff]:
            lock = self._part_locks.get(key)
            if lock is None or not lock.locked():
                self._rendered.pop(key, None)
                self._part_locks.pop(key, None)

    # --- slack.batch: post one message of a batch card ---------------------------------------------------------------

    async def batch_post(self, item: OutboxItem) -> None:
        batch_id, part = item.payload["batch_id"], int(item.payload["part"])
        view = await self.batches.card_view(batch_id=batch_id)
        if view is None:
            return
        batch, posted = view
        if part in posted:
            return  # never a second copy of a message
        channel, thread = batch["channel"], {}
        if part > 0:
            if 0 not in posted or part - 1 not in posted:  # the thread keeps the parts in order
                raise RetryLater("the previous part of the batch card is not posted yet", delay_s=1.0)
            channel, thread = posted[0].channel, {"thread_ts": posted[0].ts}
        pacer = self.delivery.pacer
        wait = pacer.slot(item.id, channel)
        if wait > 0.25:
            raise Defer(wait)
        await asyncio.sleep(wait)
        pacer.release(item.id)
        message = batch_message(batch, part=part, now=self.clock.now())
        client = self.delivery.client
        resp = await self.delivery._call(channel, client.chat_postMessage, channel=channel, text=message["text"],
                                         blocks=message["blocks"], unfurl_links=False, unfurl_media=False, **thread)
        ts, posted_channel = resp["ts"], resp.get("channel") or channel
        permalink = None
        if part == 0:
            try:
                permalink = (await client.chat_getPermalink(channel=posted_channel, message_ts=ts)).get("permalink")
            except SlackApiError as e:
                log.info("chat.getPermalink failed for batch %s: %s", batch_id, e.response.get("error"))
        await self.batches.record_part(batch_id=batch_id, part=part, channel=posted_channel, ts=ts,
                                       permalink=permalink)
