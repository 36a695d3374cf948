"""Grants from Slack: "Approve + allow" on a card, and Revoke in the ``/signoff grants`` list."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp

from bot import blocks, blocks_grants
from bot.errors import SignoffError
from bot.ids import Action, Block, View
from bot.review import SlackReview
from handlers.common import answers_errors, clicker, modal_opener


def register(app: AsyncApp, review: SlackReview) -> None:
    app.action(Action.APPROVE_GRANT)(modal_opener(review, "approve", blocks_grants.grant_modal))

    @app.view(View.GRANT)
    async def grant_submitted(ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        request_id, version = blocks.parse_modal_metadata(view.get("private_metadata") or "")
        duration_s, same_args = blocks_grants.parse_grant_submission(view["state"]["values"])
        try:
            await review.approve_and_grant(request_id, clicker(body), duration_s=duration_s, same_args=same_args,
                                           expected_version=version)
        except SignoffError as e:
            await ack(response_action="errors", errors={Block.GRANT_DURATION: e.message})
            return
        await ack()

    @app.action(Action.REVOKE_GRANT)
    @answers_errors
    async def revoke(ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Any) -> None:
        await ack()
        await review.revoke_grant(action["value"], clicker(body))
        await respond(replace_original=True, **blocks_grants.grants_list(await review.list_grants()))
