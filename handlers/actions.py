"""Buttons on the approval card: Approve, Edit, Reject, View full."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp

from bot import blocks
from bot.ids import Action
from bot.review import SlackReview
from handlers.common import answers_errors, clicker, modal_opener


def register(app: AsyncApp, review: SlackReview) -> None:
    @app.action(Action.APPROVE)
    @answers_errors
    async def approve(ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Any, client: Any) -> None:
        await ack()
        req = await review.decide(action["value"], clicker(body), kind="approve")
        if (body.get("container") or {}).get("is_ephemeral"):  # a `/signoff show` card: show the decision there
            await respond(replace_original=True, **blocks.approval_card(req, now=review.service.clock.now()))

    app.action(Action.EDIT)(modal_opener(review, "edit", blocks.edit_modal))
    app.action(Action.REJECT)(modal_opener(review, "reject", blocks.reject_modal))

    @app.action(Action.VIEW_FULL)
    @answers_errors
    async def view_full(ack: Any, body: dict[str, Any], action: dict[str, Any], client: Any,
                   respond: Any) -> None:
        await ack()
        request_id, field = blocks.parse_view_full_value(action["value"])
        req = await review.load(request_id)
        await client.views_open(trigger_id=body["trigger_id"], view=blocks.view_full_modal(req, field))
