"""Pure Block Kit builders for batch cards: several requests reviewed on one card, each decidable on its own.

A batch JSON (``bot.batches.batch_json``) in, ``{"text", "blocks"}`` out. A card lists at most
``ITEMS_PER_MESSAGE`` requests (two blocks each, within Slack's 50); a bigger batch continues in replies in the
card's thread ("parts"). Part 0, the card itself, also carries the counts and Approve all / Reject all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    HeaderBlock,
    InputBlock,
    PlainTextInputElement,
    SectionBlock,
)
from slack_sdk.models.blocks.basic_components import MarkdownTextObject, PlainTextObject
from slack_sdk.models.views import View as ViewModel

from bot.blocks import STATUS_BADGE, STATUS_TITLE
from bot.blocks_lists import request_line
from bot.blocks_text import escape_mrkdwn, fit_mrkdwn, parse_time, person, slack_date, truncate
from bot.ids import Action, View
from bot.ids import Block as BlockId

ITEMS_PER_MESSAGE = 20
STATUS_ORDER = ("pending", "approved", "modified", "rejected", "expired", "cancelled")


def parts(item_count: int) -> int:
    """How many messages a batch card of ``item_count`` requests is made of."""
    return max(1, math.ceil(item_count / ITEMS_PER_MESSAGE))


def part_of(index: int) -> int:
    """The part (message) listing the request at ``index`` in the batch (submission order)."""
    return index // ITEMS_PER_MESSAGE


def _md(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=truncate(text, 3000))


def _counts(items: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for req in items:
        counts[str(req.get("status"))] = counts.get(str(req.get("status")), 0) + 1
    return counts


def _decided_line(req: Mapping[str, Any]) -> str:
    status = str(req.get("status"))
    decision = req.get("decision") or {}
    by = decision.get("by") or {}
    at = parse_time(decision.get("at") or req.get("decided_at"))
    who = "" if status == "expired" or not by else f" by {person(by)}"
    when = f" · {slack_date(at)}" if at else ""
    line = f"{STATUS_BADGE.get(status, ':grey_question:')} *{STATUS_TITLE.get(status, status)}*{who}{when}"
    feedback = decision.get("feedback")
    if status == "rejected" and isinstance(feedback, str) and feedback.strip():
        line += f" — _{fit_mrkdwn(' '.join(feedback.split()), 300)[0]}_"
    return line


def _item(req: Mapping[str, Any], n: int, now: datetime) -> list[Block]:
    rid = str(req.get("id"))
    line = f"*{n}.* " + request_line(req, now, link=False)
    if req.get("status") != "pending":
        return [SectionBlock(text=_md(line + "\n" + _decided_line(req)))]
    required = int(req.get("required_approvals") or 1)
    if required > 1:
        have = len([a for a in req.get("approvals") or [] if a.get("version") == req.get("version")])
        line += f"\n:busts_in_silhouette: {have} of {required} approvals"
    confirm = None
    if req.get("risk") == "critical":  # as on a single card: a critical action is approved in two steps
        tool = truncate(str((req.get("action") or {}).get("tool")), 64)
        confirm = ConfirmObject(title="Approve a critical action?", confirm="Approve", deny="Back",
                                text=f"The agent runs `{escape_mrkdwn(tool)}` as soon as you confirm.")
    return [
        SectionBlock(text=_md(line)),
        ActionsBlock(
            block_id=f"batch_item:{rid}",
            elements=[
                ButtonElement(text="Approve", action_id=Action.BATCH_APPROVE_ITEM, value=rid, style="primary",
                              confirm=confirm),
                ButtonElement(text="Reject", action_id=Action.BATCH_REJECT_ITEM, value=rid, style="danger"),
                ButtonElement(text="Details", action_id=Action.SHOW, value=rid),
            ],
        ),
    ]


def batch_message(batch: Mapping[str, Any], *, part: int, now: datetime) -> dict[str, Any]:
    """Message ``part`` of the batch's card."""
    items: list[Mapping[str, Any]] = list(batch.get("requests") or [])
    total = len(items)
    start = part * ITEMS_PER_MESSAGE
    shown = items[start : start + ITEMS_PER_MESSAGE]
    counts = _counts(items)
    pending = counts.get("pending", 0)
    bid = escape_mrkdwn(str(batch.get("id")))
    count_text = " · ".join(f"{counts[s]} {s}" for s in STATUS_ORDER if counts.get(s))
    blocks: list[Block] = []
    if part == 0:
        title = (
            f":package: {total} requests from {batch.get('agent')} to review together"
            if batch.get("kind") == "api"
            else f":package: {total} requests arrived together"
        )
        blocks.append(HeaderBlock(text=PlainTextObject(text=truncate(title, 150), emoji=True)))
        notes = [count_text, f"Batch `{bid}`"]
        if total > ITEMS_PER_MESSAGE:
            notes.append(f"items {ITEMS_PER_MESSAGE + 1} to {total} are in the thread below")
        if batch.get("kind") != "api":
            notes.append("each can be decided on its own")
        blocks.append(ContextBlock(elements=[_md(" · ".join(notes))]))
    else:
        blocks.append(
            ContextBlock(
                elements=[_md(f"Batch `{bid}`, items {start + 1} to {start + len(shown)} of {total} · {count_text}")]
            )
        )
    for n, req in enumerate(shown, start + 1):
        blocks += _item(req, n, now)
    if part == 0 and pending:
        blocks.append(
            ActionsBlock(
                block_id="batch_all",
                elements=[
                    ButtonElement(
                        text=f"Approve all {pending}",
                        action_id=Action.BATCH_APPROVE_ALL,
                        value=str(batch.get("id")),
                        style="primary",
                        confirm=ConfirmObject(
                            title="Approve all?",
                            confirm="Approve all",
                            deny="Back",
                            text=f"Approve the {pending} pending request(s) of this batch? Each is recorded "
                            f"as your approval of that request.",
                        ),
                    ),
                    ButtonElement(
                        text=f"Reject all {pending}",
                        action_id=Action.BATCH_REJECT_ALL,
                        value=str(batch.get("id")),
                        style="danger",
                        confirm=ConfirmObject(
                            title="Reject all?",
                            confirm="Reject all",
                            deny="Back",
                            style="danger",
                            text=f"Reject the {pending} pending request(s) of this batch? "
                            f"You will be asked for the feedback the agent gets.",
                        ),
                    ),
                ],
            )
        )
    text = (
        f"{total} requests to review together: {count_text}"
        if part == 0
        else f"Batch items {start + 1} to {start + len(shown)} of {total}"
    )
    return {"text": truncate(text, 3000), "blocks": [b.to_dict() for b in blocks]}


def batch_reject_modal(batch_id: str, pending: int) -> dict[str, Any]:
    """Feedback for rejecting every pending request of a batch (the agent reads it on each)."""
    view = ViewModel(
        type="modal",
        callback_id=View.BATCH_REJECT,
        title=PlainTextObject(text="Reject all"),
        submit=PlainTextObject(text="Reject all"),
        close=PlainTextObject(text="Cancel"),
        private_metadata=batch_id,
        blocks=[
            ContextBlock(
                elements=[
                    _md(
                        f"Rejects the {pending} pending request(s) of batch `{escape_mrkdwn(batch_id)}` you may decide."
                    )
                ]
            ),
            InputBlock(
                block_id=BlockId.FEEDBACK,
                label=PlainTextObject(text="Why? Each agent reads this and can try again differently."),
                element=PlainTextInputElement(action_id=Action.FEEDBACK_INPUT, multiline=True, max_length=3000),
            ),
        ],
    )
    return view.to_dict()


def decide_all_summary(kind: str, outcome: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The ephemeral answer to Approve all / Reject all: what was decided and what was left, and why."""
    verb = "Approved" if kind == "approve" else "Rejected"
    lines = [f"*{verb} {len(outcome.get('decided') or [])}* request(s) of the batch."]
    if outcome.get("already"):
        lines.append(f"{len(outcome['already'])} were decided already.")
    if outcome.get("refused"):
        lines.append(
            f"{len(outcome['refused'])} you may not decide (not a reviewer of them, or you asked "
            f"for them yourself); they stay pending."
        )
    if outcome.get("failed"):
        lines.append(f"{len(outcome['failed'])} could not be decided; try them one by one.")
    text = " ".join(lines)
    return {"text": truncate(text.replace("*", ""), 3000), "blocks": [SectionBlock(text=_md(text)).to_dict()]}
