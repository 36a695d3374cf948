"""Reviewing from Slack: who may decide, who they are, and the decision itself.

Handlers call this; it checks authorisation on every click (the payload's user id is trusted only because
Bolt verified Slack's signature), resolves the reviewer's display name, records the click in the audit trail
and hands the decision to the approval service.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from bot import domain
from bot.directory import Person, SlackDirectory
from bot.domain import Actor
from bot.errors import AlreadyDecided, Forbidden
from bot.service import ApprovalService

log = logging.getLogger("signoff.review")


@dataclass(frozen=True)
class Clicker:
    """The Slack user behind an interaction."""

    user_id: str
    team_id: str | None
    username: str | None = None


class SlackReview:
    def __init__(self, *, service: ApprovalService, directory: SlackDirectory) -> None:
        self.service = service
        self.directory = directory

    async def load(self, request_id: str) -> dict[str, Any]:
        return await self.service.get(request_id=request_id)

    async def authorise(self, req: dict[str, Any], who: Clicker, *, kind: str) -> None:
        """Raise ``Forbidden`` with an explanation the reviewer can act on."""
        reviewers: list[str] = req.get("reviewers") or []
        if reviewers and not await self.directory.is_member(who.user_id, reviewers):
            listed = ", ".join(_mention(r) for r in reviewers)
            raise Forbidden(f"You are not one of the reviewers of this request ({listed}), so nothing was changed.")
        requester = (req.get("context") or {}).get("requested_by_slack_user")
        if requester and requester == who.user_id and kind in ("approve", "edit"):
            raise Forbidden("You asked for this action, so you cannot approve it yourself; another reviewer must.")
        person = await self.directory.person(who.user_id, team_id=who.team_id, fallback=who.username)
        if person.deleted or person.is_bot:
            raise Forbidden("Deactivated accounts and bots cannot decide requests.")

    async def open_for(self, request_id: str, who: Clicker, *, kind: str) -> dict[str, Any]:
        """Load a request for a modal (edit or reject), refusing early if the clicker may not decide."""
        req = await self.load(request_id)
        await self._refuse_if_decided(req, who, kind)
        await self._authorise_and_record(req, who, kind)
        return req

    async def decide(
        self,
        request_id: str,
        who: Clicker,
        *,
        kind: str,
        args: dict[str, Any] | None = None,
        feedback: str | None = None,
        expected_version: int | None = None,
    ) -> dict[str, Any]:
        req = await self.load(request_id)
        await self._refuse_if_decided(req, who, kind)
        # The decision's own audit event records this click (who, team, which button): one write, not two.
        person = await self._authorise_and_record(req, who, kind, record=False)
        actor = Actor(who.user_id, person.name, "slack")
        try:
            return await self.service.decide(
                request_id=request_id, kind=kind, actor=actor, args=args, feedback=feedback,
                expected_version=expected_version,
                audit_extra={"click": kind, "team_id": who.team_id or person.team_id},
            )
        except AlreadyDecided:
            await self.service.refresh_card(request_id=request_id)
            raise

    async def approve_and_grant(
        self, request_id: str, who: Clicker, *, duration_s: int, same_args: bool, expected_version: int | None
    ) -> dict[str, Any]:
        """Approve, then auto-approve the same agent and tool (optionally the same args) for ``duration_s``."""
        grants = self.service.grants
        if grants is None:
            raise Forbidden("Grants are not available on this server.")
        req = await self.decide(request_id, who, kind="approve", expected_version=expected_version)
        if req["status"] not in ("approved", "modified"):
            raise Forbidden("This request needs more approvals before a grant can be made from it; "
                            "your approval was recorded.")
        person = await self.directory.person(who.user_id, team_id=who.team_id, fallback=who.username)
        await grants.create(agent=req["agent"], tool=req["action"]["tool"],
                            args=req["final_args"] if same_args else None, duration_s=duration_s,
                            actor=Actor(who.user_id, person.name, "slack"), request_id=request_id)
        return req

    async def list_grants(self) -> list[dict[str, Any]]:
        grants = self.service.grants
        return [g.to_json() for g in await grants.refresh()] if grants is not None else []

    async def revoke_grant(self, grant_id: str, who: Clicker) -> None:
        grants = self.service.grants
        if grants is None:
            raise Forbidden("Grants are not available on this server.")
        reviewers = list(self.service.config.reviewers)
        if reviewers and not await self.directory.is_member(who.user_id, reviewers):
            raise Forbidden("Only configured reviewers may revoke grants.")
        person = await self.directory.person(who.user_id, team_id=who.team_id, fallback=who.username)
        await grants.revoke(grant_id=grant_id, actor=Actor(who.user_id, person.name, "slack"))

    async def _refuse_if_decided(self, req: dict[str, Any], who: Clicker, kind: str) -> None:
        if not domain.is_terminal(req["status"]):
            return
        actor = Actor(who.user_id, who.username or who.user_id, "slack")
        await self.service.record_event(request_id=req["id"], kind="click-late", actor=actor,
                                        data={"action": kind, "status": req["status"]})
        await self.service.refresh_card(request_id=req["id"])
        d = req.get("decision") or {}
        by = (d.get("by") or {})
        name = _mention(by["id"]) if str(by.get("id", "")).startswith(("U", "W")) else by.get("name")
        raise AlreadyDecided(domain.lost_race_message(req["status"], name, _parse(d.get("at"))))

    async def _authorise_and_record(self, req: dict[str, Any], who: Clicker, kind: str, *,
                                    record: bool = True) -> Person:
        try:
            await self.authorise(req, who, kind=kind)
        except Forbidden as e:
            actor = Actor(who.user_id, who.username or who.user_id, "slack")
            await self.service.record_event(request_id=req["id"], kind="click-refused", actor=actor,
                                            data={"action": kind, "reason": e.message, "team_id": who.team_id})
            raise
        person = await self.directory.person(who.user_id, team_id=who.team_id, fallback=who.username)
        if record:
            await self.service.record_event(
                request_id=req["id"], kind="click", actor=Actor(who.user_id, person.name, "slack"),
                data={"action": kind, "team_id": who.team_id or person.team_id},
            )
        return person


def _mention(ref: str) -> str:
    if ref.startswith("S"):
        return f"<!subteam^{ref}>"
    return f"<@{ref}>"


def _parse(text: str | None) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
