"""Approve all / Reject all from a batch card: each pending item decided on its own, as if clicked one by one.

Every item goes through ``SlackReview.decide`` (authorisation, the click in the audit trail, the decision), so
an item this reviewer may not decide stays pending, and an item someone else decided meanwhile is reported,
not overwritten.
"""

from __future__ import annotations

import logging

from bot.batches import BatchService
from bot.errors import AlreadyDecided, Forbidden, SignoffError
from bot.review import Clicker, SlackReview

log = logging.getLogger("signoff.review")


class BatchReview:
    def __init__(self, *, review: SlackReview, batches: BatchService) -> None:
        self.review = review
        self.batches = batches

    async def pending_count(self, batch_id: str) -> int:
        batch = await self.batches.get(batch_id=batch_id)
        return int(batch["counts"].get("pending", 0))

    async def decide_all(self, batch_id: str, who: Clicker, *, kind: str,
                         feedback: str | None = None) -> dict[str, list[str]]:
        """Decide every pending item; the ids by outcome: decided, already (decided), refused, failed."""
        batch = await self.batches.get(batch_id=batch_id)
        outcome: dict[str, list[str]] = {"decided": [], "already": [], "refused": [], "failed": []}
        for req in batch["requests"]:
            rid = req["id"]
            if req["status"] != "pending":
                continue
            try:
                await self.review.decide(rid, who, kind=kind, feedback=feedback)
            except AlreadyDecided:
                outcome["already"].append(rid)
            except Forbidden:
                outcome["refused"].append(rid)
            except SignoffError as e:
                log.info("%s of %s in batch %s failed: %s", kind, rid, batch_id, e.message)
                outcome["failed"].append(rid)
            else:
                outcome["decided"].append(rid)
        return outcome
