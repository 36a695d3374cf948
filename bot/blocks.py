"""Pure Block Kit builders: a request's JSON in, Slack message and modal JSON out. No I/O.

The approval card lives here; modals are in ``blocks_modals``, argument rendering in ``blocks_args``,
text helpers in ``blocks_text`` and the limit checks in ``blocks_limits``. This module re-exports the
public names, so callers import everything from ``bot.blocks``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
)
from slack_sdk.models.blocks.basic_components import MarkdownTextObject, PlainTextObject

from bot.blocks_args import (
    CardContext,
    arg_blocks,
    change_lines,
    parse_view_full_value,
    section,
    view_full_value,
)
from bot.blocks_labels import label_menu
from bot.blocks_limits import BlockKitLimitError, check_message_limits, check_view_limits
from bot.blocks_modals import (
    SubmissionError,
    current_args,
    edit_modal,
    parse_edit_submission,
    parse_modal_metadata,
    parse_reject_submission,
    reject_modal,
    view_full_modal,
)
from bot.blocks_text import (
    as_text,
    clean,
    escape_mrkdwn,
    fit_mrkdwn,
    fit_quote,
    mention,
    parse_time,
    person,
    slack_date,
    slack_len,
    truncate,
)
from bot.domain import changed_args
from bot.ids import Action
from bot.ids import Block as BlockId

__all__ = [
    "BlockKitLimitError",
    "SubmissionError",
    "approval_card",
    "check_message_limits",
    "check_view_limits",
    "current_args",
    "edit_modal",
    "escape_mrkdwn",
    "parse_edit_submission",
    "parse_modal_metadata",
    "parse_reject_submission",
    "parse_view_full_value",
    "reject_modal",
    "truncate",
    "view_full_modal",
    "view_full_value",
]

RISK_BADGE = {
    "low": ":large_green_circle:",
    "medium": ":large_yellow_circle:",
    "high": ":large_orange_circle:",
    "critical": ":red_circle:",
}
STATUS_BADGE = {
    "approved": ":white_check_mark:",
    "modified": ":pencil2:",
    "rejected": ":x:",
    "expired": ":hourglass:",
    "cancelled": ":no_entry_sign:",
}
STATUS_TITLE = {
    "approved": "Approved",
    "modified": "Approved with edits",
    "rejected": "Rejected",
    "expired": "Expired",
    "cancelled": "Cancelled",
}
VIA = {"cli": "the CLI", "api": "the API", "policy": "policy", "scheduler": "the scheduler"}
ARG_BLOCKS = 24  # leaves room for every other part of a card within Slack's 50 blocks
CHANGE_SECTIONS = 3
# (summary, user request, reasoning) on a pending card and on a decided one
CONTEXT_LIMITS = {True: (1500, 1000, 300), False: (500, 300, 200)}
FEEDBACK_CHARS = 2000
CONTEXT_CHARS = 1000  # one element of a context line


def approval_card(
    req: Mapping[str, Any], *, now: datetime, slack_names: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The card for a request (``bot.serialize.request_json`` shape): pending with buttons, or decided.

    A pending request past its deadline at ``now`` is shown expired, so a late re-render never offers
    buttons that can only fail. ``slack_names`` (Slack id → display name) names people in the
    notification text, where mentions are not resolved.
    """
    req = dict(req)
    expires_at = parse_time(req.get("expires_at"))
    if req.get("status") == "pending" and expires_at is not None and expires_at <= now:
        req["status"] = "expired"
        req["decision"] = {
            "kind": "expire",
            "by": {"id": "scheduler", "name": "signoff", "via": "scheduler"},
            "at": req.get("expires_at"),
            "feedback": "no decision before the deadline",
        }
    status = str(req.get("status"))
    pending = status == "pending"
    ctx = CardContext.for_card(str(req.get("id")), pending=pending)
    args = current_args(req)
    original = (req.get("action") or {}).get("args") or {}
    changed = changed_args(original, args)

    blocks: list[Block] = [_header(req, status), _meta(req)]
    context = _context_blocks(req.get("context") or {}, ctx, CONTEXT_LIMITS[pending])
    blocks += context
    if pending and changed:
        note = f":pencil2: *Edited* — this is version {req.get('version')}; earlier approvals no longer count."
        blocks += _changes(original, args, changed, ctx, note)
    if context:
        blocks.append(DividerBlock())
    blocks += arg_blocks(str((req.get("action") or {}).get("tool")), args, ctx, max_blocks=ARG_BLOCKS)
    footer = _footer(req, pending)
    if footer:
        blocks.append(ContextBlock(elements=footer))
    if pending:
        blocks.append(_buttons(req))
    else:
        blocks.append(DividerBlock())
        blocks.append(section(_decision_line(req, status)))
        if status == "modified" and changed:
            blocks += _changes(original, args, changed, ctx, "*What changed*")
        if req.get("result"):
            blocks.append(section(_result_line(req["result"])))
        if ctx.cut:
            where = f"`signoff approvals show {escape_mrkdwn(clean(ctx.request_id))}`"
            cut_note = MarkdownTextObject(text=f":information_source: Some values are cut; {where} shows them whole.")
            blocks.append(ContextBlock(elements=[cut_note]))
    return {"text": _fallback(req, status, slack_names), "blocks": [b.to_dict() for b in blocks]}


def _header(req: Mapping[str, Any], status: str) -> HeaderBlock:
    tool = clean(str((req.get("action") or {}).get("tool")))
    if status == "pending":
        risk = str(req.get("risk"))
        text = f"{RISK_BADGE.get(risk, ':white_circle:')} {tool} · {risk} risk"
    else:
        text = f"{STATUS_BADGE.get(status, ':grey_question:')} {tool} · {STATUS_TITLE.get(status, status).lower()}"
    return HeaderBlock(text=PlainTextObject(text=truncate(text, 150), emoji=True))


def _meta(req: Mapping[str, Any]) -> ContextBlock:
    risk = str(req.get("risk"))
    parts = [
        f":robot_face: Agent *{fit_mrkdwn(str(req.get('agent')), 200)[0]}*",
        f"Risk: {RISK_BADGE.get(risk, ':white_circle:')} *{escape_mrkdwn(risk)}*",
        f"Request `{fit_mrkdwn(str(req.get('id')), 100)[0]}`",
    ]
    context = req.get("context") or {}
    if context.get("requested_by_slack_user"):
        parts.append(f"For {mention(str(context['requested_by_slack_user']))}")
    if context.get("session_id"):
        parts.append(f"Session `{fit_mrkdwn(str(context['session_id']), 100)[0]}`")
    reviewers = [mention(str(r)) for r in req.get("reviewers") or []]
    if reviewers:
        parts.append(truncate("Reviewers: " + " ".join(reviewers), CONTEXT_CHARS))
    return ContextBlock(elements=[MarkdownTextObject(text=p) for p in parts])


def _context_blocks(context: Mapping[str, Any], ctx: CardContext, limits: tuple[int, int, int]) -> list[Block]:
    """Summary, links, the user's request (quoted) and the agent's reasoning, each cut to its limit."""
    blocks: list[Block] = []
    summary, user_request, reasoning = (context.get(k) for k in ("summary", "user_request", "reasoning"))
    if isinstance(summary, str) and summary.strip():
        text, cut = fit_mrkdwn(summary, limits[0])
        blocks.append(section(text, ctx.more("summary") if cut else None))
    links = [_link(link) for link in context.get("links") or []]
    if links:
        shown, total = "", 0
        for link in links:
            if shown and slack_len(shown) + slack_len(link) > 2500:
                break
            shown += ("  ·  " if shown else "") + link
            total += 1
        more = f"  ·  +{len(links) - total} more" if total < len(links) else ""
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f":link: {shown}{more}")]))
    if isinstance(user_request, str) and user_request.strip():
        text, cut = fit_quote(user_request, limits[1])
        blocks.append(section(f"*The user asked*\n{text}", ctx.more("user_request") if cut else None))
    if isinstance(reasoning, str) and reasoning.strip():
        text, cut = fit_mrkdwn(reasoning, limits[2])
        blocks.append(section(f"*Agent's reasoning*\n{text}", ctx.more("reasoning") if cut else None))
    return blocks


def _link(link: Any) -> str:
    if isinstance(link, Mapping):
        url, title = str(link.get("url") or ""), str(link.get("title") or link.get("url") or "")
    else:
        url, title = str(link), str(link)
    label = fit_mrkdwn(title, 200)[0].replace("|", "¦")
    if url.startswith(("http://", "https://")) and not any(c in url for c in "|<> \n"):
        return f"<{escape_mrkdwn(truncate(url, 2000))}|{label}>"
    return label


def _changes(
    before: Mapping[str, Any], after: Mapping[str, Any], names: list[str], ctx: CardContext, title: str
) -> list[Block]:
    lines = change_lines(before, after, names)
    blocks: list[Block] = []
    i = 0
    while i < len(lines) and len(blocks) < CHANGE_SECTIONS:
        text, ref = title if not blocks else "", None
        while i < len(lines) and slack_len(text) + slack_len(lines[i][0]) + 1 <= 2800:
            text = f"{text}\n{lines[i][0]}" if text else lines[i][0]
            ref = ref or lines[i][1]
            i += 1
        if i < len(lines) and len(blocks) == CHANGE_SECTIONS - 1:
            text += f"\n_…and {len(lines) - i} more changed argument(s)._"
            ref = ref or "args"
        blocks.append(section(text, ctx.more(ref) if ref else None))
    return blocks


def _footer(req: Mapping[str, Any], pending: bool) -> list[MarkdownTextObject]:
    parts = []
    labels = [f"`{fit_mrkdwn(str(label), 64)[0]}`" for label in req.get("labels") or []]
    if labels:
        parts.append(truncate(":label: " + "  ".join(labels), CONTEXT_CHARS))
    required = int(req.get("required_approvals") or 1)
    if required > 1:
        version = req.get("version")
        approvers = [a.get("reviewer") or {} for a in req.get("approvals") or [] if a.get("version") == version]
        who = ", ".join(person(a) for a in approvers)
        count = f":busts_in_silhouette: {len(approvers)} of {required} approvals"
        parts.append(truncate(f"{count} ({who})" if who else count, CONTEXT_CHARS))
    expires_at = parse_time(req.get("expires_at"))
    if pending and expires_at is not None:
        parts.append(f":hourglass_flowing_sand: Expires {slack_date(expires_at)} if nobody decides")
    if req.get("rule") and pending:
        parts.append(f":pushpin: Routed by `{fit_mrkdwn(str(req['rule']), 200)[0]}`")
    return [MarkdownTextObject(text=p) for p in parts]


def _buttons(req: Mapping[str, Any]) -> ActionsBlock:
    rid = str(req.get("id"))
    critical = req.get("risk") == "critical"
    tool = truncate(clean(str((req.get("action") or {}).get("tool"))), 64)
    approve_confirm = reject_confirm = None
    if critical:
        approve_confirm = ConfirmObject(
            title="Approve a critical action?",
            text=f"The agent runs `{escape_mrkdwn(tool)}` as soon as you confirm.",
            confirm="Approve",
            deny="Back",
        )
        reject_confirm = ConfirmObject(
            title="Reject a critical action?",
            text=f"The agent will not run `{escape_mrkdwn(tool)}`; you will be asked why.",
            confirm="Reject",
            deny="Back",
            style="danger",
        )
    elements = [
        ButtonElement(text="Approve", action_id=Action.APPROVE, value=rid, style="primary", confirm=approve_confirm),
        ButtonElement(text="Edit", action_id=Action.EDIT, value=rid),
        ButtonElement(text="Reject", action_id=Action.REJECT, value=rid, style="danger", confirm=reject_confirm),
    ]
    # A standing grant is offered only where one approval decides and the action is not critical.
    if not critical and int(req.get("required_approvals") or 1) <= 1:
        elements.append(ButtonElement(text="Approve + allow…", action_id=Action.APPROVE_GRANT, value=rid))
    # The overflow menu: Escalate, add a common label, remove one of the request's labels (bot.blocks_labels).
    return ActionsBlock(block_id=BlockId.ACTIONS, elements=[*elements, label_menu(req)])


def _decision_line(req: Mapping[str, Any], status: str) -> str:
    decision = req.get("decision") or {}
    by = decision.get("by") or {}
    at = parse_time(decision.get("at") or req.get("decided_at"))
    when = f" · {slack_date(at)}" if at else ""
    badge, title = STATUS_BADGE.get(status, ":grey_question:"), STATUS_TITLE.get(status, status)
    via = by.get("via")
    if via == "policy":
        rule = decision.get("rule") or req.get("rule")
        who = f" by policy `{fit_mrkdwn(str(rule), 200)[0]}`" if rule else " by policy"
    elif status == "expired":
        who = ""
    else:
        who = f" by {person(by)}" + (f" via {VIA[via]}" if via in VIA else "")
    line = f"{badge} *{title}*{who}{when}"
    feedback = decision.get("feedback")
    if isinstance(feedback, str) and feedback.strip():
        label = {"rejected": "Feedback", "expired": "Reason", "cancelled": "Reason"}.get(status, "Note")
        line += f"\n*{label}:*\n" + fit_quote(feedback, FEEDBACK_CHARS)[0]
    return line


def _result_line(result: Mapping[str, Any]) -> str:
    ok = bool(result.get("ok"))
    at = parse_time(result.get("at"))
    line = ("✓ *The agent ran it: succeeded*" if ok else "✗ *The agent ran it: failed*") + (
        f" · {slack_date(at)}" if at else ""
    )
    detail = result.get("detail")
    if detail not in (None, ""):
        line += "\n" + fit_quote(detail if isinstance(detail, str) else as_text(detail), 1500)[0]
    return line


def _fallback(req: Mapping[str, Any], status: str, names: Mapping[str, str] | None) -> str:
    tool = clean(str((req.get("action") or {}).get("tool")))
    rid = clean(str(req.get("id")))
    if status == "pending":
        text = f"Approval needed: {clean(str(req.get('agent')))} wants to run {tool} ({req.get('risk')} risk) — {rid}"
    else:
        by = (req.get("decision") or {}).get("by")
        who = "" if status == "expired" else f" by {clean(person(by, dict(names or {}), mrkdwn=False))}"
        text = f"{STATUS_TITLE.get(status, status)}{who}: {tool} ({rid})"
    return fit_mrkdwn(text, 4000)[0]
