"""Buttons on a batch card: Approve / Reject one item, Approve all / Reject all (each item decided on its own)."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp

from bot import blocks, blocks_batch
from bot.batch_review import BatchReview
from bot.errors import SignoffError
from bot.ids import Action, View
from bot.review import SlackReview
from handlers.common import clicker


def register(app: AsyncApp, review: SlackReview, batch_review: BatchReview) -> None:
    @app.action(Action.BATCH_APPROVE_ITEM)
    async def approve_item(ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        await review.decide(action["value"], clicker(body), kind="approve")

    @app.action(Action.BATCH_REJECT_ITEM)
    async def reject_item(ack: Any, body: dict[str, Any], action: dict[str, Any], client: Any) -> None:
        await ack()
        req = await review.open_for(action["value"], clicker(body), kind="reject")
        await client.views_open(trigger_id=body["trigger_id"], view=blocks.reject_modal(req))

    @app.action(Action.BATCH_APPROVE_ALL)
    async def approve_all(ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Any) -> None:
        await ack()
        outcome = await batch_review.decide_all(action["value"], clicker(body), kind="approve")
        await respond(response_type="ephemeral", replace_original=False,
                      **blocks_batch.decide_all_summary("approve", outcome))

    @app.action(Action.BATCH_REJECT_ALL)
    async def reject_all(ack: Any, body: dict[str, Any], action: dict[str, Any], client: Any) -> None:
        await ack()
        pending = await batch_review.pending_count(action["value"])
        await client.views_open(trigger_id=body["trigger_id"],
                                view=blocks_batch.batch_reject_modal(action["value"], pending))

    @app.view(View.BATCH_REJECT)
    async def reject_all_submitted(ack: Any, body: dict[str, Any], view: dict[str, Any], client: Any) -> None:
        try:
            feedback = blocks.parse_reject_submission(view["state"]["values"])
        except blocks.SubmissionError as e:
            await ack(response_action="errors", errors=e.errors)
            return
        await ack()
        who = clicker(body)
        try:
            outcome = await batch_review.decide_all(view["private_metadata"], who, kind="reject", feedback=feedback)
        except SignoffError as e:
            summary = {"text": e.message}
        else:
            summary = blocks_batch.decide_all_summary("reject", outcome)
        channel = await client.conversations_open(users=who.user_id)
        await client.chat_postMessage(channel=channel["channel"]["id"], **summary)
