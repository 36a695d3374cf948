"""Labels from the card's overflow menu: add or remove one, or Escalate.

Only the request's reviewers may change its labels from Slack (the same check as deciding). Escalate labels the
request with the configured escalation label, marks it escalated (so the scheduler's escalation ladder does not
escalate it again), posts to the escalation channel with a link to the card and replies in the card's thread;
all of it written in one transaction, the Slack messages as outbox rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot import domain
from bot.blocks_labels import ADD, ESCALATE, REMOVE, LabelChoice
from bot.blocks_text import escape_mrkdwn
from bot.config import Config
from bot.domain import Actor
from bot.effects import Change, OutboxRow
from bot.errors import AlreadyDecided, NotFound
from bot.review import Clicker, SlackReview
from bot.schedule_blocks import escalation_post, escalation_reply
from bot.schedule_service import SLACK_MESSAGE
from bot.serialize import request_json
from storage import repository as repo
from storage import repository_inbox as qi


class CardLabels:
    def __init__(self, *, review: SlackReview, config: Config) -> None:
        self.review = review
        self.service = review.service
        self.config = config

    async def apply(self, choice: LabelChoice, who: Clicker) -> str:
        """Apply an overflow choice; returns what to tell the reviewer."""
        req = await self.review.load(choice.request_id)
        await self.review.authorise(req, who, kind="label")
        person = await self.review.directory.person(who.user_id, team_id=who.team_id, fallback=who.username)
        actor = Actor(who.user_id, person.name, "slack")
        label = escape_mrkdwn(choice.label)
        if choice.op == ESCALATE:
            return await self.escalate(choice.request_id, actor)
        if choice.op == ADD:
            await self.service.change_labels(request_id=choice.request_id, add=[choice.label], remove=[],
                                             actor=actor)
            return f"Added the label `{label}`."
        assert choice.op == REMOVE
        await self.service.change_labels(request_id=choice.request_id, add=[], remove=[choice.label], actor=actor)
        return f"Removed the label `{label}`."

    async def escalate(self, request_id: str, actor: Actor) -> str:
        svc, esc = self.service, self.config.escalation
        reason = f"was escalated by <@{actor.id}> from Slack"
        async with svc.db.write() as s:
            row = await repo.get_request(s, request_id=request_id, for_update=True)
            if row is None:
                raise NotFound(f"no request with id {request_id!r}")
            now = svc.clock.now()
            if domain.is_overdue(row.status, row.expires_at, now):
                raise AlreadyDecided(domain.lost_race_message("expired", None, row.expires_at))
            if domain.is_terminal(row.status):
                raise AlreadyDecided(domain.lost_race_message(row.status, row.decided_by_name, row.decided_at))
            escalated_before = row.escalated_at
            won = await qi.mark_escalated(s, request_id=request_id, now=now)
            added = esc.label not in {lb.label for lb in row.labels}
            if added:
                await repo.insert_labels(s, pairs=[(request_id, esc.label)])
            s.expire(row, ["labels"])
            fresh = await repo.get_request(s, request_id=request_id)
            assert fresh is not None
            public = request_json(fresh, now=now)
            events: list[dict[str, Any]] = []
            rows: list[OutboxRow] = []
            if added:
                data = {"added": [esc.label], "removed": []}
                events.append(_event(request_id, "labels", actor, now, data))
                rows += svc.plan(Change("labels", public, extra=data))
            if won:
                events.append(_event(request_id, "escalated", actor, now, {
                    "reason": "reviewer", "label": esc.label, "channel": esc.channel, "mention": list(esc.mention)}))
                has_card = row.channel is not None
                if esc.channel:
                    post = escalation_post(public, mention_ids=esc.mention, reason=reason, now=now, linked=has_card)
                    rows.append(_message(f"escalate:{request_id}:post", request_id, post, channel=esc.channel,
                                         link_card=has_card))
                if has_card:
                    reply = escalation_reply(public, channel=esc.channel, mention_ids=esc.mention, label=esc.label,
                                             reason=reason)
                    rows.append(_message(f"escalate:{request_id}:thread", request_id, reply, thread_of=request_id))
            await repo.add_audit(s, events=events)
            await repo.add_outbox(s, items=[r.to_row(now) for r in rows])
        svc.outbox_wakeup.set()
        tag = escape_mrkdwn(esc.label)
        if not won:
            return f"This request was already escalated (at {escalated_before:%Y-%m-%d %H:%M} UTC); " \
                   f"it is labelled `{tag}`." if escalated_before else f"It is labelled `{tag}`."
        where = f" and posted to <#{esc.channel}>" if esc.channel else " (no escalation channel is configured)"
        return f":rotating_light: Escalated: labelled `{tag}`{where}."


def _message(key: str, request_id: str, message: dict[str, Any], *, channel: str | None = None,
             thread_of: str | None = None, link_card: bool = False) -> OutboxRow:
    payload = {"channel": channel, "text": message["text"], "blocks": message["blocks"], "thread_of": thread_of,
               "link_card": request_id if link_card else None}
    return OutboxRow(kind=SLACK_MESSAGE, key=key, payload=payload, request_id=request_id)


def _event(rid: str, kind: str, actor: Actor, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    return dict(request_id=rid, kind=kind, actor_id=actor.id, actor_name=actor.name, via=actor.via, at=at,
                data=data)
