"""Modal submissions: the Edit modal and the Reject modal.

Validation and the decision happen before the ack, so a bad value or a lost race is shown in the modal
itself; both are fast database work, well inside Slack's 3 seconds.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp

from bot import blocks
from bot.errors import SignoffError
from bot.ids import Block, View
from bot.review import SlackReview
from handlers.common import clicker


def register(app: AsyncApp, review: SlackReview) -> None:
    @app.view(View.EDIT)
    async def edit_submitted(ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        request_id, version = blocks.parse_modal_metadata(view.get("private_metadata") or "")
        try:
            req = await review.load(request_id)
            args, errors = blocks.parse_edit_submission(
                view["state"]["values"], view["private_metadata"], blocks.current_args(req))
            if errors or args is None:
                await ack(response_action="errors", errors=errors)
                return
            await review.decide(request_id, clicker(body), kind="edit", args=args, expected_version=version)
        except SignoffError as e:
            await ack(response_action="errors", errors={_first_input(view): e.message})
            return
        await ack()

    @app.view(View.REJECT)
    async def reject_submitted(ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        request_id, _ = blocks.parse_modal_metadata(view.get("private_metadata") or "")
        try:
            feedback = blocks.parse_reject_submission(view["state"]["values"])
            await review.decide(request_id, clicker(body), kind="reject", feedback=feedback)
        except blocks.SubmissionError as e:
            await ack(response_action="errors", errors=e.errors)
            return
        except SignoffError as e:
            await ack(response_action="errors", errors={Block.FEEDBACK: e.message})
            return
        await ack()


def _first_input(view: dict[str, Any]) -> str:
    for block in view.get("blocks") or []:
        if block.get("type") == "input":
            return str(block.get("block_id"))
    return str(Block.FEEDBACK)
