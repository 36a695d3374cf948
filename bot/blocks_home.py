"""Pure Block Kit builder for the App Home tab: counts, what waits for this reviewer (with the card's buttons),
and what they decided lately. At most ``HOME_WAITING`` requests with two blocks each: far below 100 blocks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    SectionBlock,
)
from slack_sdk.models.blocks.basic_components import MarkdownTextObject, PlainTextObject
from slack_sdk.models.views import View

from bot.blocks import STATUS_BADGE, STATUS_TITLE
from bot.blocks_lists import request_line
from bot.blocks_text import escape_mrkdwn, fit_mrkdwn, slack_date, truncate
from bot.ids import SLASH_COMMAND, Action
from bot.listing import HomeData


def _md(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=truncate(text, 3000))


def _header(text: str) -> HeaderBlock:
    return HeaderBlock(text=PlainTextObject(text=text, emoji=True))


def decision_buttons(req: Mapping[str, Any], *, block_id: str) -> ActionsBlock:
    """Approve / Edit / Reject for one request, the same actions as on its card."""
    rid = str(req.get("id"))
    confirm = None
    if req.get("risk") == "critical":
        tool = truncate(str((req.get("action") or {}).get("tool")), 64)
        confirm = ConfirmObject(
            title="Approve a critical action?",
            text=f"The agent runs `{escape_mrkdwn(tool)}` as soon as you confirm.",
            confirm="Approve",
            deny="Back",
        )
    return ActionsBlock(
        block_id=block_id,
        elements=[
            ButtonElement(text="Approve", action_id=Action.APPROVE, value=rid, style="primary", confirm=confirm),
            ButtonElement(text="Edit", action_id=Action.EDIT, value=rid),
            ButtonElement(text="Reject", action_id=Action.REJECT, value=rid, style="danger"),
        ],
    )


def home_view(home: HomeData) -> dict[str, Any]:
    blocks: list[Block] = [
        _header("signoff"),
        SectionBlock(
            fields=[
                _md(f"*Waiting for you*\n{home.waiting_total}"),
                _md(f"*Pending in total*\n{home.pending_total}"),
                _md(f"*You decided (7 days)*\n{home.decided_week}"),
            ]
        ),
        DividerBlock(),
        _header("Waiting for you"),
    ]
    if not home.waiting:
        blocks.append(SectionBlock(text=_md(":white_check_mark: Nothing waits for your decision.")))
    for req in home.waiting:
        blocks.append(SectionBlock(text=_md(request_line(req, home.at))))
        blocks.append(decision_buttons(req, block_id=f"home:{req['id']}"))
    if home.waiting_total > len(home.waiting):
        more = home.waiting_total - len(home.waiting)
        blocks.append(
            ContextBlock(
                elements=[_md(f"Oldest first; {more} more wait for you: `{SLASH_COMMAND} mine` lists them all.")]
            )
        )
    blocks += [DividerBlock(), _header("Recently decided by you")]
    if home.decided:
        lines = []
        for req, at in home.decided:
            status = str(req.get("status"))
            tool, _ = fit_mrkdwn(str((req.get("action") or {}).get("tool") or "?"), 64)
            title = STATUS_TITLE.get(status, "Approved by you, waiting for more approvals")
            badge = STATUS_BADGE.get(status, ":hourglass_flowing_sand:")
            lines.append(f"{badge} *{tool}* · {title} · `{escape_mrkdwn(str(req.get('id')))}` · {slack_date(at)}")
        blocks.append(SectionBlock(text=_md("\n".join(lines))))
    else:
        blocks.append(SectionBlock(text=_md("Nothing yet. Your decisions show up here.")))
    blocks.append(ContextBlock(elements=[_md(f"Updated {slack_date(home.at)}")]))
    return View(type="home", blocks=blocks).to_dict()
