"""App Home kept current: after a reviewer decides from Slack, their Home tab is published again.

``HomeEffects`` plans a ``slack.home`` outbox row in the transaction of each decision a Slack user made (an
approval towards a quorum included); ``HomeDelivery`` publishes that user's Home from the state at delivery
time. Decisions in quick succession (Approve all) share one publish: a row is skipped when a publish for the
same user began after the row was claimed, since that publish already read the decision.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import domain
from bot.blocks_home import home_view
from bot.effects import Change, OutboxRow
from bot.inbox import Inbox
from bot.outbox import GiveUp, RetryLater
from storage.models import OutboxItem

HOME = "slack.home"
HOME_DEBOUNCE_S = 2
DECISIONS = frozenset({"approved-by", "approved", "modified", "rejected", "edited"})
PERMANENT = {"not_enabled", "user_not_found", "invalid_auth", "account_inactive", "token_revoked", "missing_scope"}


def slack_decider(change: Change) -> str | None:
    """The Slack user whose decision this change is, if a Slack user made it."""
    if change.kind not in DECISIONS:
        return None
    req = change.request
    if domain.is_terminal(str(req.get("status"))):
        by = (req.get("decision") or {}).get("by") or {}
        return str(by["id"]) if by.get("via") == "slack" and by.get("id") else None
    approvals = [a for a in req.get("approvals") or [] if a.get("via") == "slack"]
    if not approvals:
        return None
    latest: dict[str, Any] = max(approvals, key=lambda a: str(a.get("at")))
    return str((latest.get("reviewer") or {}).get("id") or "") or None


class HomeEffects:
    def plan(self, change: Change) -> list[OutboxRow]:
        user = slack_decider(change)
        if user is None:
            return []
        rid = change.request.get("id")
        decided = change.request.get("decided_at")
        if not decided:
            return [OutboxRow(kind=HOME, key=f"{HOME}:{user}:{secrets.token_hex(8)}", request_id=rid,
                              payload={"user_id": user})]
        # One refresh per reviewer per few seconds, however many decisions they make in them: rebuilding a Home
        # tab reads their whole queue, and doing that per click slowed the clicks themselves.
        at = datetime.fromisoformat(decided.replace("Z", "+00:00"))
        bucket = int(at.timestamp() // HOME_DEBOUNCE_S)
        not_before = datetime.fromtimestamp((bucket + 1) * HOME_DEBOUNCE_S, tz=UTC)
        return [OutboxRow(kind=HOME, key=f"{HOME}:{user}:{bucket}", request_id=rid, payload={"user_id": user},
                          not_before=not_before)]


class HomeDelivery:
    def __init__(self, *, client: AsyncWebClient, inbox: Inbox,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.inbox = inbox
        self._monotonic = monotonic
        self._locks: dict[str, asyncio.Lock] = {}
        self._published: dict[str, float] = {}

    async def publish(self, item: OutboxItem) -> None:
        await self.publish_for(str(item.payload["user_id"]), since=self._monotonic())

    async def publish_for(self, user_id: str, *, since: float) -> None:
        """Publish ``user_id``'s Home unless a publish that began after ``since`` already did."""
        async with self._locks.setdefault(user_id, asyncio.Lock()):
            if self._published.get(user_id, float("-inf")) > since:
                return
            begun = self._monotonic()
            view = home_view(await self.inbox.home(user_id))
            try:
                await self.client.views_publish(user_id=user_id, view=view)
            except SlackApiError as e:
                error = e.response.get("error", "unknown")
                if e.response.status_code == 429:
                    delay = float(e.response.headers.get("Retry-After", "1") or 1)
                    raise RetryLater("Slack rate limit on views.publish", delay_s=delay) from e
                if error in PERMANENT:
                    raise GiveUp(f"Slack refused views.publish: {error}") from e
                raise RetryLater(f"Slack error: {error}") from e
            self._published[user_id] = max(self._published.get(user_id, float("-inf")), begun)
        if len(self._published) > 4096:  # publish times only matter while a decision's rows are delivered
            cutoff = self._monotonic() - 600.0
            for user in [u for u, at in self._published.items() if at < cutoff]:
                if not self._locks[user].locked():
                    self._published.pop(user, None)
                    self._locks.pop(user, None)
