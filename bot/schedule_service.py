"""The scheduler's use cases: expire on time, remind, escalate, extend once, send digests.

Every method is an idempotent sweep over database state, safe when several replicas run it at once: work is
claimed with one conditional UPDATE (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), what it causes is written
in the same transaction (audit events, outbox rows with unique keys such as ``remind:{id}:{n}``), and a
digest period is recorded under a unique (name, period). Slack messages other than the card go out as
``slack.message`` outbox rows: ``{channel, text, blocks, thread_of, link_card}``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.clock import iso
from bot.config import Digest
from bot.cron import cron_period, crontab, interval_period, zone
from bot.digest_blocks import PER_LABEL, DigestGroup, digest_message
from bot.domain import Actor
from bot.effects import Change, OutboxRow
from bot.errors import NotFound
from bot.ladder import extended_deadline, next_reminder
from bot.schedule_blocks import age_text, escalation_post, escalation_reply, extension_reply, reminder_reply
from bot.serialize import request_json
from bot.service import ApprovalService
from storage import repository as repo
from storage.models import Request

log = logging.getLogger("signoff.schedule")

SLACK_MESSAGE = "slack.message"
SCHEDULER = Actor("scheduler", "signoff", "scheduler")
BATCH = 500
# Bigger batches expire a burst faster; each holds SQLite's write lock for a fraction of a second.
# ``on_expiry: escalate`` is applied this long before the deadline, so that no reader ever sees the request
# past its first deadline (where it would already read as expired); more than one expiry-sweep interval.
EXTEND_LEAD_S = 3.0


@dataclass(frozen=True)
class DigestOutcome:
    name: str
    period: str
    ran: bool            # False: this period was already handled (by this or another replica)
    pending: int = 0     # distinct pending requests listed
    queued: bool = False  # a Slack message was queued
    text: str | None = None

    def summary(self) -> str:
        what = "queued for Slack" if self.queued else "not posted"
        return f"{self.name} for {self.period}: {self.pending} pending, {what}"


class ScheduleService:
    def __init__(self, *, service: ApprovalService, slack_enabled: bool, batch: int = BATCH,
                 extend_lead_s: float = EXTEND_LEAD_S) -> None:
        self.service = service
        self.db = service.db
        self.clock = service.clock
        self.config = service.config
        self.slack_enabled = slack_enabled
        self.batch = batch
        self.extend_lead = timedelta(seconds=extend_lead_s)

    # --- expiry -------------------------------------------------------------------------------------------

    async def expire_due(self) -> int:
        """Apply ``on_expiry: escalate`` to requests at their first deadline, then expire what is overdue."""
        await self.extend_due()
        return await self.service.expire_due()

    async def startup_sweep(self) -> None:
        """Everything overdue after downtime, at once: run before the server answers its first request."""
        await self.expire_due()
        await self.escalate_due()
        await self.remind_due()

    async def _due(self, kind: str) -> bool:
        now = self.clock.now()
        async with self.db.read() as s:
            return kind in await repo.ladder_work_due(s, now=now, extend_until=now + self.extend_lead)

    # --- on_expiry: escalate --------------------------------------------------------------------------------

    async def extend_due(self) -> int:
        """Give each ``on_expiry: escalate`` request reaching its deadline one extension (by its original
        timeout) and escalate it; one whose extended deadline is past too is left to expire."""
        total = 0
        while await self._due("extend"):
            async with self.db.write() as s:
                now = self.clock.now()
                claimed = await repo.claim_extensions(s, now=now, until=now + self.extend_lead, limit=self.batch)
                updates: list[dict[str, Any]] = []
                escalate: list[str] = []
                already: list[str] = []
                for req in claimed:
                    deadline = extended_deadline(created_at=req.created_at, expires_at=req.expires_at)
                    if deadline <= now:
                        continue
                    row: dict[str, Any] = {"id": req.id, "expires_at": deadline}
                    if req.escalated_at is None:
                        row["escalated_at"] = now
                        escalate.append(req.id)
                    else:
                        already.append(req.id)
                    updates.append(row)
                await repo.set_request_times(s, rows=updates)
                await self._escalate(s, escalate, now=now, deadline=True)
                fresh = await repo.get_requests(s, ids=already)
                rows: list[dict[str, Any]] = []
                for req in fresh:
                    public = request_json(req, now=now)
                    rows += self._plan(Change("extended", public), now)
                    if self._has_card(req):
                        rows.append(self._message(f"extend:{req.id}", req, extension_reply(public), now))
                await repo.add_outbox(s, items=rows)
                await repo.add_audit(s, events=[
                    _event(u["id"], "extended", now, {"expires_at": iso(u["expires_at"])}) for u in updates])
            self.service.outbox_wakeup.set()
            total += len(claimed)
            if len(claimed) < self.batch:
                break
        return total

    # --- escalation -------------------------------------------------------------------------------------------

    async def escalate_due(self) -> int:
        """Escalate every pending request past its ``escalate_at``: label, escalation channel, card thread."""
        total = 0
        while await self._due("escalate"):
            async with self.db.write() as s:
                now = self.clock.now()
                claimed = await repo.claim_escalations(s, now=now, limit=self.batch)
                await self._escalate(s, [r.id for r in claimed], now=now, deadline=False)
            self.service.outbox_wakeup.set()
            total += len(claimed)
            if len(claimed) < self.batch:
                break
        return total

    async def _escalate(self, s: Any, ids: Sequence[str], *, now: datetime, deadline: bool) -> None:
        """The escalation of requests already marked escalated in this transaction."""
        if not ids:
            return
        esc = self.config.escalation
        await repo.insert_labels(s, pairs=[(rid, esc.label) for rid in ids])
        rows: list[dict[str, Any]] = []
        events = []
        for req in await repo.get_requests(s, ids=ids):
            public = request_json(req, now=now)
            if deadline:
                reason = "reached its deadline without a decision, so the deadline is extended once"
            else:
                waited = (req.escalate_at or now) - req.created_at
                reason = f"has waited {age_text(waited)} without a decision"
            rows += self._plan(Change("escalated", public, extra={"label": esc.label}), now)
            if self.slack_enabled and esc.channel:
                post = escalation_post(public, mention_ids=esc.mention, reason=reason, now=now,
                                       linked=req.channel is not None)
                rows.append(self._message(f"escalate:{req.id}:post", req, post, now, channel=esc.channel,
                                          thread=False, link_card=req.channel is not None))
            if self._has_card(req):
                reply = escalation_reply(public, channel=esc.channel, mention_ids=esc.mention, label=esc.label,
                                         reason=reason)
                rows.append(self._message(f"escalate:{req.id}:thread", req, reply, now))
            events.append(_event(req.id, "escalated", now, {
                "reason": "deadline" if deadline else "escalate_after", "label": esc.label,
                "channel": esc.channel, "mention": list(esc.mention)}))
        await repo.add_outbox(s, items=rows)
        await repo.add_audit(s, events=events)

    # --- reminders -----------------------------------------------------------------------------------------------

    async def remind_due(self) -> int:
        """Send every due reminder (a thread reply on the card mentioning the reviewers) and plan the next."""
        total = 0
        while await self._due("remind"):
            async with self.db.write() as s:
                now = self.clock.now()
                claimed = await repo.claim_reminders(s, now=now, limit=self.batch)
                nexts: list[tuple[str, datetime]] = []
                rows: list[dict[str, Any]] = []
                events = []
                for req, was_due in claimed:
                    n = req.reminders_sent
                    nxt = next_reminder(sent=n, every_s=req.remind_every_s, most=req.remind_max, due=was_due,
                                        now=now)
                    if nxt is not None:
                        nexts.append((req.id, nxt))
                    queued = self._has_card(req)
                    if queued:
                        reply = reminder_reply(request_json(req, now=now), n=n, of=req.remind_max, now=now)
                        rows.append(self._message(f"remind:{req.id}:{n}", req, reply, now))
                    events.append(_event(req.id, "reminded", now, {
                        "n": n, "of": req.remind_max, "reviewers": list(req.reviewers or []), "queued": queued,
                        "next": iso(nxt)}))
                await repo.set_next_reminders(s, due=nexts)
                await repo.add_outbox(s, items=rows)
                await repo.add_audit(s, events=events)
            self.service.outbox_wakeup.set()
            total += len(claimed)
            if len(claimed) < self.batch:
                break
        return total

    # --- digests ---------------------------------------------------------------------------------------------------

    def digest(self, name: str) -> Digest:
        for d in self.config.digests:
            if d.name == name:
                return d
        known = ", ".join(d.name for d in self.config.digests) or "none configured"
        raise NotFound(f"no digest named {name!r} (known: {known})")

    def digest_period(self, name: str) -> str | None:
        """The period the digest's schedule is in now: its latest fire time (None: it did not just fire)."""
        d = self.digest(name)
        now = self.clock.now()
        if d.cron is not None:
            return cron_period(crontab(d.cron, d.timezone), now, zone(d.timezone))
        assert d.interval_s is not None
        return interval_period(d.interval_s, now)

    async def run_scheduled_digest(self, name: str) -> DigestOutcome | None:
        period = self.digest_period(name)
        if period is None:
            log.warning("digest %s: no fire time in the last minutes; skipped", name)
            return None
        return await self.send_digest(name=name, period=period)

    async def send_digest_now(self, name: str) -> DigestOutcome:
        """``signoff digest run``: send at once, outside the schedule."""
        return await self.send_digest(name=name, period=f"manual-{iso(self.clock.now())}")

    async def send_digest(self, *, name: str, period: str) -> DigestOutcome:
        """Send digest ``name`` for ``period`` unless that period was already handled."""
        d = self.digest(name)
        async with self.db.write() as s:
            now = self.clock.now()
            if not await repo.claim_digest_period(s, name=name, period=period, at=now):
                return DigestOutcome(name, period, ran=False)
            groups = []
            for label in d.labels:
                found, total = await repo.pending_with_label(s, label=label, now=now, limit=PER_LABEL)
                groups.append(DigestGroup(label, [request_json(r, now=now) for r in found], total))
            distinct = await repo.count_pending_with_labels(s, labels=d.labels, now=now)
            message = None
            if distinct or d.post_when_empty:
                message = digest_message(name=name, groups=groups, distinct_total=distinct, now=now)
            queued = message is not None and self.slack_enabled
            if message is not None and queued:
                row = OutboxRow(kind=SLACK_MESSAGE, key=f"digest:{name}:{period}", payload={
                    "channel": d.channel, "text": message["text"], "blocks": message["blocks"], "thread_of": None,
                    "link_card": None})
                await repo.add_outbox(s, items=[row.to_row(now)])
            await repo.finish_digest_run(s, name=name, period=period, request_count=distinct, posted=queued)
            await repo.add_audit(s, events=[_event(None, "digest", now, {
                "name": name, "period": period, "pending": distinct, "queued": queued})])
        if queued:
            self.service.outbox_wakeup.set()
        return DigestOutcome(name, period, ran=True, pending=distinct, queued=queued,
                             text=message["text"] if message else None)

    # --- shared ------------------------------------------------------------------------------------------------------

    def _has_card(self, req: Request) -> bool:
        """Thread replies need a card: Slack on, and a channel the card was (or will be) posted to."""
        return self.slack_enabled and req.channel is not None

    def _plan(self, change: Change, now: datetime) -> list[dict[str, Any]]:
        return [r.to_row(now) for eff in self.service.effects for r in eff.plan(change)]

    @staticmethod
    def _message(key: str, req: Request, message: dict[str, Any], now: datetime, *, channel: str | None = None,
                 thread: bool = True, link_card: bool = False) -> dict[str, Any]:
        payload = {"channel": channel or req.channel, "text": message["text"], "blocks": message["blocks"],
                   "thread_of": req.id if thread else None, "link_card": req.id if link_card else None}
        return OutboxRow(kind=SLACK_MESSAGE, key=key, payload=payload, request_id=req.id).to_row(now)


def _event(rid: str | None, kind: str, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    return dict(request_id=rid, kind=kind, actor_id=SCHEDULER.id, actor_name=SCHEDULER.name, via=SCHEDULER.via,
                at=at, data=data)
