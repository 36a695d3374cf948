"""Modal submissions: the Edit modal and the Reject modal.

Validation and the decision happen before the ack, so a bad value or a lost race is shown in the modal
itself; both are fast database work, well inside Slack's 3 seconds.
"""

from __future__ import annotations

import json
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
        meta = json.loads(view.get("private_metadata") or "{}")
        request_id = meta.get("id", "")
        try:
            req = await review.load(request_id)
        except SignoffError as e:
            await ack(response_action="errors", errors={_first_block(view): e.message})
            return
        current = req["final_args"] if req["final_args"] is not None else req["action"]["args"]
        args, errors = blocks.parse_edit_submission(view["state"]["values"], view["private_metadata"], current)
        if errors or args is None:
            await ack(response_action="errors", errors=errors)
            return
        try:
            await review.decide(request_id, clicker(body), kind="edit", args=args,
                                expected_version=meta.get("version"))
        except SignoffError as e:
            await ack(response_action="errors", errors={_first_block(view): e.message})
            return
        await ack()

    @app.view(View.REJECT)
    async def reject_submitted(ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        meta = json.loads(view.get("private_metadata") or "{}")
        feedback = blocks.parse_reject_submission(view["state"]["values"])
        if not feedback.strip():
            await ack(response_action="errors", errors={Block.FEEDBACK: "Tell the agent why, so it can adapt."})
            return
        try:
            await review.decide(meta.get("id", ""), clicker(body), kind="reject", feedback=feedback)
        except SignoffError as e:
            await ack(response_action="errors", errors={Block.FEEDBACK: e.message})
            return
        await ack()


def _first_block(view: dict[str, Any]) -> str:
    for block in view.get("blocks") or []:
        if block.get("type") == "input":
            return str(block.get("block_id"))
    return str(Block.FEEDBACK)
