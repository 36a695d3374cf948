"""Batches: several requests reviewed together on one card, each decided on its own.

Two kinds: ``api`` batches an agent submits with ``POST /v1/batches``, and ``burst`` batches the Slack delivery
forms when many requests for one channel wait for their card at once (``bot.coalesce``). Either way the items
are ordinary requests (routing, policy, expiry and ``decide`` apply to each), and the batch card is planned as
``slack.batch`` outbox rows, one per message of the card, written in the transaction that forms the batch.
Every request of a posted batch records the card's channel and ``ts``, so a decision updates the batch card.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot import domain
from bot.batch_schemas import BatchBody
from bot.blocks_batch import parts
from bot.clock import iso
from bot.domain import Actor, Principal
from bot.effects import OutboxRow
from bot.errors import IdempotencyConflict, NotFound
from bot.serialize import request_json
from bot.service import MAX_WAIT_S, ApprovalService
from storage import repository as repo
from storage import repository_batches as qb
from storage.models import Batch, Request

BATCH_POST = "slack.batch"  # payload {batch_id, part}: post one message of a batch card
CARD_POST = "slack.post"  # the single card SlackEffects plans; batch items get the batch card instead
SLACK = Actor("slack", "signoff", "slack")


@dataclass(frozen=True)
class CardTarget:
    """Where a request's card is, or is to be: what the Slack delivery needs to route a card change."""

    request_id: str
    status: str
    channel: str | None
    created_at: datetime
    slack_ts: str | None
    batch_id: str | None


@dataclass(frozen=True)
class Posted:
    """A posted message of a batch card."""

    channel: str
    ts: str


class _NothingClaimed(Exception):
    pass


class BatchService:
    def __init__(self, *, service: ApprovalService, slack_enabled: bool) -> None:
        self.service = service
        self.db = service.db
        self.clock = service.clock
        self.slack_enabled = slack_enabled

    # --- POST /v1/batches ------------------------------------------------------------------------------------

    async def submit(self, *, agent: str, body: BatchBody) -> tuple[dict[str, Any], bool]:
        """Create every request of the batch in one transaction; (batch JSON, created). The same
        ``idempotency_key`` with the same body answers the original batch; with another body, 409."""
        items = body.items()
        svc = self.service
        # The request-level steps (routing, policy, grants, budgets, outbox planning) are the service's own,
        # run here inside the batch's transaction so that the whole batch is committed or nothing.
        prepared = [svc.prepare(agent=agent, body=item) for item in items]
        # One card, so one channel: the shared one, else where the first item waiting for review would go.
        channel = next((p.row["channel"] for p in prepared if p.row["status"] == "pending" and p.row["channel"]),
                       None)
        prepared = [p if p.row["status"] != "pending" or p.row["channel"] == channel else
                    svc.prepare(agent=agent, body=item.model_copy(update={"channel": channel}))
                    for p, item in zip(prepared, items, strict=True)]
        now = self.clock.now()
        bid = domain.new_id("bat_", now)
        ids = [p.row["id"] for p in prepared]
        body_hash = body.body_hash()
        key = body.idempotency_key
        async with self.db.write() as s:
            existing = await qb.batch_by_key(s, agent=agent, key=key) if key else None
            created = existing is None and await qb.insert_batch(s, row=dict(
                id=bid, kind="api", agent=agent, channel=channel, item_count=len(ids), request_ids=ids,
                created_at=now, idempotency_key=key, body_hash=body_hash))
            if not created:
                existing = existing or (await qb.batch_by_key(s, agent=agent, key=key) if key else None)
                assert existing is not None
                if existing.body_hash != body_hash:
                    raise IdempotencyConflict(f"idempotency_key {key!r} was already used with a different batch; "
                                              "use a new key for a new batch")
                return await self._json(s, existing, now), False
            await repo.insert_requests(s, rows=[{**p.row, "batch_id": bid} for p in prepared])
            await s.run_sync(lambda sync: svc.take_budgets(sync.connection(), prepared, now))
            await repo.insert_labels(s, pairs=[(p.row["id"], lb) for p in prepared for lb in p.labels])
            batched = [_event(rid, "batched", Actor(agent, agent, "api"), now, {"batch_id": bid, "index": i})
                       for i, rid in enumerate(ids)]
            await repo.add_audit(s, events=[e for p in prepared for e in p.audit] + batched)
            # Items waiting for review are listed on the batch card instead of getting a card each.
            rows = [r for p in prepared for c in svc.changes(p) for r in svc.plan(c)
                    if not (r.kind == CARD_POST and p.row["status"] == "pending")]
            if any(p.row["status"] == "pending" for p in prepared):
                rows += self._card_rows(bid, channel, len(ids))
            await repo.add_outbox(s, items=[r.to_row(now) for r in rows])
            out = await self._json(s, await qb.get_batch(s, batch_id=bid), now)
        svc.outbox_wakeup.set()
        for req in out["requests"]:
            svc.hooks.submitted(req)
            if domain.is_terminal(req["status"]):
                svc.hooks.terminal(req)
        return out, True

    def _card_rows(self, batch_id: str, channel: str | None, count: int) -> list[OutboxRow]:
        if not (self.slack_enabled and channel):
            return []
        return [OutboxRow(kind=BATCH_POST, key=f"{BATCH_POST}:{batch_id}:{part}",
                          payload={"batch_id": batch_id, "part": part}) for part in range(parts(count))]

    # --- reading and waiting ---------------------------------------------------------------------------------

    async def get(self, *, batch_id: str, principal: Principal | None = None) -> dict[str, Any]:
        now = self.clock.now()
        async with self.db.read() as s:
            batch = await qb.get_batch(s, batch_id=batch_id)
            if batch is None or (principal is not None and not principal.sees_all and batch.agent != principal.name):
                raise NotFound(f"no batch with id {batch_id!r}")
            items = await qb.batch_items(s, batch=batch)
        if any(domain.is_overdue(r.status, r.expires_at, now) for r in items):
            await self.service.expire_due()  # reads show them expired already; make it so in the database
        return batch_json(batch, items, now)

    async def wait(self, *, batch_id: str, timeout_s: float, principal: Principal | None = None) -> dict[str, Any]:
        """Return once every request of the batch is terminal, or after ``timeout_s`` (at most 60) as it is."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, min(timeout_s, MAX_WAIT_S))
        waiters = self.service.waiters
        while True:
            current = await self.get(batch_id=batch_id, principal=principal)
            pending = [r for r in current["requests"] if r["status"] == "pending"]
            remaining = deadline - loop.time()
            if not pending or remaining <= 0:
                return current
            futs = {r["id"]: waiters.register(r["id"]) for r in pending}
            try:
                # Read again now that we listen, so a decision committed in between is not missed.
                current = await self.get(batch_id=batch_id, principal=principal)
                pending = [r for r in current["requests"] if r["status"] == "pending"]
                if not pending:
                    return current
                now = self.clock.now()
                soonest = min((_parse(r["expires_at"]) - now).total_seconds() for r in pending)
                # Also wake at the soonest deadline, so an expiry is reported at once.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait(list(futs.values()), timeout=max(0.0, min(remaining, soonest + 0.05)),
                                       return_when=asyncio.FIRST_COMPLETED)
            finally:
                for rid, fut in futs.items():
                    waiters.discard(rid, fut)

    async def _json(self, s: Any, batch: Batch | None, now: datetime) -> dict[str, Any]:
        assert batch is not None
        items = await qb.batch_items(s, batch=batch)
        return batch_json(batch, items, now)

    # --- the Slack side: bursts, and posting the card ----------------------------------------------------------

    async def card_target(self, *, request_id: str) -> CardTarget | None:
        async with self.db.read() as s:
            req = await repo.get_request(s, request_id=request_id)
        if req is None:
            return None
        status = "expired" if domain.is_overdue(req.status, req.expires_at, self.clock.now()) else req.status
        return CardTarget(req.id, status, req.channel, req.created_at, req.slack_ts, req.batch_id)

    async def waiting_for_card(self, *, channel: str, limit: int) -> list[str]:
        async with self.db.read() as s:
            return await qb.waiting_for_card(s, channel=channel, now=self.clock.now(), limit=limit)

    async def coalesce(self, *, channel: str, more_than: int, limit: int) -> list[str]:
        """If more than ``more_than`` requests for ``channel`` wait for a card, put the oldest ``limit`` of them
        in a new batch and plan its card; returns the requests moved (none when the burst has passed or another
        worker took them first)."""
        try:
            async with self.db.write() as s:
                now = self.clock.now()
                waiting = await qb.waiting_for_card(s, channel=channel, now=now, limit=limit)
                if len(waiting) <= more_than:
                    raise _NothingClaimed
                bid = domain.new_id("bat_", now)
                await qb.insert_batch(s, row=dict(id=bid, kind="burst", agent=None, channel=channel, item_count=0,
                                                  request_ids=[], created_at=now))
                claimed = await qb.claim_into_batch(s, ids=waiting, batch_id=bid)
                if not claimed:
                    raise _NothingClaimed
                await qb.set_items(s, batch_id=bid, request_ids=claimed)
                await repo.add_audit(s, events=[
                    _event(rid, "batched", SLACK, now, {"batch_id": bid, "index": i, "burst": True})
                    for i, rid in enumerate(claimed)])
                await repo.add_outbox(s, items=[r.to_row(now) for r in self._card_rows(bid, channel, len(claimed))])
        except _NothingClaimed:
            return []
        self.service.outbox_wakeup.set()
        return claimed

    async def card_view(self, *, batch_id: str) -> tuple[dict[str, Any], dict[int, Posted]] | None:
        """The batch (as its card shows it) and the messages of its card posted so far, by part."""
        now = self.clock.now()
        async with self.db.read() as s:
            batch = await qb.get_batch(s, batch_id=batch_id)
            if batch is None:
                return None
            out = await self._json(s, batch, now)
            messages = await qb.batch_messages(s, batch_id=batch_id)
        return out, {part: Posted(m.channel, m.ts) for part, m in messages.items()}

    async def record_part(self, *, batch_id: str, part: int, channel: str, ts: str, permalink: str | None) -> None:
        """Record a posted message of the card; part 0 becomes the card of every request of the batch."""
        async with self.db.write() as s:
            now = self.clock.now()
            await qb.add_batch_message(s, batch_id=batch_id, part=part, channel=channel, ts=ts, at=now)
            if part != 0:
                return
            batch = await qb.get_batch(s, batch_id=batch_id)
            assert batch is not None
            await qb.set_batch_card(s, batch_id=batch_id, channel=channel, ts=ts, permalink=permalink)
            updated = await qb.set_cards(s, ids=batch.request_ids, channel=channel, ts=ts, permalink=permalink)
            await repo.add_audit(s, events=[
                _event(rid, "posted", SLACK, now, {"channel": channel, "ts": ts, "batch_id": batch_id})
                for rid in updated])


def batch_json(batch: Batch, items: list[Request], now: datetime) -> dict[str, Any]:
    """A batch as the API returns it (and its card shows it): its requests in submission order, with counts."""
    reqs = [request_json(r, now=now) for r in items]
    counts: dict[str, int] = {}
    for r in reqs:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    slack = None
    if batch.slack_ts:
        slack = {"channel": batch.slack_channel, "ts": batch.slack_ts, "permalink": batch.slack_permalink}
    return {
        "id": batch.id,
        "kind": batch.kind,
        "agent": batch.agent,
        "channel": batch.channel,
        "created_at": iso(batch.created_at),
        "status": "pending" if counts.get("pending") else "done",
        "counts": counts,
        "requests": reqs,
        "slack": slack,
    }


def _event(rid: str, kind: str, actor: Actor, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    return dict(request_id=rid, kind=kind, actor_id=actor.id, actor_name=actor.name, via=actor.via, at=at,
                data=data)


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
