"""Block Kit for grants: the "Approve + allow" modal and the list of active grants. Pure builders."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from slack_sdk.models.blocks import (
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    RadioButtonsElement,
    SectionBlock,
)
from slack_sdk.models.views import View as SlackView

from bot.blocks_text import escape_mrkdwn
from bot.ids import Action, Block, View

DURATIONS = {"3600": "1 hour", "14400": "4 hours", "86400": "24 hours"}
SCOPES = {"any": "any arguments", "same": "exactly these arguments"}
LIST_MAX = 40  # each grant is a section; stays well inside 50 blocks per message


def grant_modal(req: Mapping[str, Any]) -> dict[str, Any]:
    """Approve this request and auto-approve the same agent and tool for a while."""
    tool, agent = escape_mrkdwn(str(req["action"]["tool"])), escape_mrkdwn(str(req["agent"]))
    durations = [Option(value=k, text=v) for k, v in DURATIONS.items()]
    scopes = [Option(value=k, text=v) for k, v in SCOPES.items()]
    view = SlackView(
        type="modal",
        callback_id=View.GRANT,
        title="Approve + allow",
        submit="Approve + allow",
        close="Cancel",
        private_metadata=json.dumps({"id": req["id"], "v": req.get("version")}, separators=(",", ":")),
        blocks=[
            SectionBlock(text=MarkdownTextObject(
                text=f"Approve this request and let *{agent}* run `{tool}` without asking for a while. "
                     "Every auto-approval is recorded, and the grant can be revoked with `/signoff grants`.")),
            InputBlock(block_id=Block.GRANT_DURATION, label="For",
                       element=RadioButtonsElement(action_id=Action.GRANT_DURATION_INPUT, options=durations,
                                                   initial_option=durations[0])),
            InputBlock(block_id=Block.GRANT_SCOPE, label="With",
                       element=RadioButtonsElement(action_id=Action.GRANT_SCOPE_INPUT, options=scopes,
                                                   initial_option=scopes[0])),
        ],
    )
    return view.to_dict()


def parse_grant_submission(values: Mapping[str, Any]) -> tuple[int, bool]:
    """Seconds the grant lasts, and whether it covers only the same args."""
    def picked(block: str) -> str | None:
        state: Mapping[str, Any] = next(iter((values.get(block) or {}).values()), {})
        value = (state.get("selected_option") or {}).get("value")
        return str(value) if value is not None else None

    duration = picked(Block.GRANT_DURATION) or "3600"
    return int(duration if duration in DURATIONS else "3600"), picked(Block.GRANT_SCOPE) == "same"


def grants_list(grants: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``/signoff grants``: the active grants, each with a Revoke button."""
    if not grants:
        return {"text": "No active grants.", "blocks": [SectionBlock(text=MarkdownTextObject(
            text="No active grants. Reviewers create one with *Approve + allow* on a card.")).to_dict()]}
    blocks: list[dict[str, Any]] = [SectionBlock(text=MarkdownTextObject(
        text=f"*{len(grants)} active grant{'s' if len(grants) != 1 else ''}*")).to_dict()]
    for g in grants[:LIST_MAX]:
        scope = "these args only" if g.get("args") is not None else "any args"
        expires = g["expires_at"]
        blocks.append(SectionBlock(
            text=MarkdownTextObject(text=(
                f"*{escape_mrkdwn(str(g['agent']))}* may run `{escape_mrkdwn(str(g['tool']))}` ({scope})\n"
                f"granted by {escape_mrkdwn(str(g['created_by']))} · until {escape_mrkdwn(str(expires))}")[:2900]),
            accessory=ButtonElement(text="Revoke", action_id=Action.REVOKE_GRANT, value=str(g["id"]),
                                    style="danger", confirm=ConfirmObject(
                                        title="Revoke this grant?", text="Later requests will wait for a human.",
                                        confirm="Revoke", deny="Keep")),
        ).to_dict())
    if len(grants) > LIST_MAX:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(
            text=f"and {len(grants) - LIST_MAX} more")]).to_dict())
    return {"text": f"{len(grants)} active grant(s)", "blocks": blocks}

