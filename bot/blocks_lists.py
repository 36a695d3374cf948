"""Pure Block Kit builders for ``/signoff`` replies: pending pages with Next / Previous, one card, stats, help.

Values in (``bot.inbox`` results), ``{"text", "blocks"}`` out, within a message's limits whatever is pending:
a page is at most ``PAGE_SIZE`` one-section items, each section's text is bounded, and a page reference in a
button value is a few hundred characters at most.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, ContextBlock, HeaderBlock, SectionBlock
from slack_sdk.models.blocks.basic_components import MarkdownTextObject, PlainTextObject

from bot.blocks import RISK_BADGE, approval_card
from bot.blocks_text import escape_mrkdwn, fit_mrkdwn, parse_time, slack_date, truncate
from bot.commands import PAGE_SIZE, USAGE, encode_page, next_page, previous_page
from bot.ids import SLASH_COMMAND, Action
from bot.listing import HelpResult, PageResult, Result, ShowResult
from bot.schedule_blocks import age_text
from bot.stats import Stats, duration

SUMMARY_CHARS = 200
LINE_CHARS = 2800  # one item's section text, under the 3,000 Slack allows
STATUS_ORDER = ("pending", "approved", "modified", "rejected", "expired", "cancelled")


def reply(result: Result) -> dict[str, Any]:
    """The ephemeral reply for any ``/signoff`` result."""
    if isinstance(result, PageResult):
        return pending_reply(result)
    if isinstance(result, ShowResult):
        return approval_card(result.request, now=result.at)
    if isinstance(result, HelpResult):
        return help_reply()
    return stats_reply(result)


def _md(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=truncate(text, 3000))


def _header(text: str) -> HeaderBlock:
    return HeaderBlock(text=PlainTextObject(text=truncate(text, 150), emoji=True))


def _message(text: str, blocks: list[Block]) -> dict[str, Any]:
    return {"text": truncate(text, 3000), "blocks": [b.to_dict() for b in blocks]}


def request_line(req: Mapping[str, Any], now: datetime, *, link: bool = True) -> str:
    """One request in a list: tool, risk, agent, id; its summary; labels, age, deadline and a card link."""
    tool, _ = fit_mrkdwn(str((req.get("action") or {}).get("tool") or "?"), 64)
    agent, _ = fit_mrkdwn(str(req.get("agent") or "?"), 64)
    risk = str(req.get("risk") or "medium")
    head = (
        f"{RISK_BADGE.get(risk, ':white_circle:')} *{tool}* · {escape_mrkdwn(risk)} risk · `{agent}` · "
        f"`{escape_mrkdwn(str(req.get('id')))}`"
    )
    lines = [head]
    summary = str((req.get("context") or {}).get("summary") or "").strip()
    if summary:
        lines.append(">" + fit_mrkdwn(" ".join(summary.split()), SUMMARY_CHARS)[0])
    meta = []
    labels = [f"`{fit_mrkdwn(str(lb), 64)[0]}`" for lb in req.get("labels") or []][:8]
    if labels:
        meta.append(":label: " + " ".join(labels))
    created, expires = parse_time(req.get("created_at")), parse_time(req.get("expires_at"))
    if created is not None:
        meta.append(f"waiting {age_text(now - created)}")
    if expires is not None and req.get("status") == "pending":
        meta.append(f"expires {slack_date(expires)}")
    permalink = (req.get("slack") or {}).get("permalink")
    if link and isinstance(permalink, str) and permalink.startswith("https://") and "|" not in permalink:
        meta.append(f"<{escape_mrkdwn(permalink)}|open the card>")
    if meta:
        lines.append(" · ".join(meta))
    return truncate("\n".join(lines), LINE_CHARS)


def _show_button(request_id: str) -> ButtonElement:
    return ButtonElement(text="Show", action_id=Action.SHOW, value=request_id)


def pending_reply(page: PageResult) -> dict[str, Any]:
    mine = page.ref.command.name == "mine"
    filters = page.ref.command.filters
    title = "Waiting for you" if mine else "Pending requests"
    where = (" matching " + " ".join(f"`{fit_mrkdwn(t, 140)[0]}`" for t in filters.terms())) if filters else ""
    blocks: list[Block] = [_header(title)]
    if not page.requests:
        none = "Nothing waits for your decision" if mine else "Nothing is pending"
        blocks.append(SectionBlock(text=_md(f":white_check_mark: {none}{where}.")))
        return _message(f"{title}: none", blocks)
    first = (page.ref.page - 1) * PAGE_SIZE + 1
    summary = f"*{page.total}* pending{where} · page {page.ref.page}"
    blocks.append(ContextBlock(elements=[_md(summary + " · newest first")]))
    for req in page.requests:
        blocks.append(SectionBlock(text=_md(request_line(req, page.at)), accessory=_show_button(str(req["id"]))))
    buttons = []
    if page.has_newer:
        ref = previous_page(page.ref, str(page.requests[0]["id"]))
        buttons.append(ButtonElement(text="Previous", action_id=Action.PAGE_PREV, value=encode_page(ref)))
    if page.has_older:
        ref = next_page(page.ref, str(page.requests[-1]["id"]))
        buttons.append(ButtonElement(text="Next", action_id=Action.PAGE_NEXT, value=encode_page(ref), style="primary"))
    if buttons:
        blocks.append(ActionsBlock(elements=buttons))
    blocks.append(
        ContextBlock(
            elements=[_md(f"`{SLASH_COMMAND} show <id>` shows a card with its buttons · `{SLASH_COMMAND} help`")]
        )
    )
    last = first + len(page.requests) - 1
    return _message(f"{title}: {page.total} pending (showing {first} to {last})", blocks)


def help_reply() -> dict[str, Any]:
    blocks: list[Block] = [
        _header("signoff in Slack"),
        SectionBlock(text=_md(USAGE)),
        ContextBlock(elements=[_md("Replies like this one are visible only to you.")]),
    ]
    return _message(f"{SLASH_COMMAND} help", blocks)


def stats_reply(stats: Stats) -> dict[str, Any]:
    fields = []
    for window in stats.windows:
        parts = [f"{window.counts[s]} {s}" for s in STATUS_ORDER if window.counts.get(s)]
        body = " · ".join(parts) if parts else "nothing submitted"
        fields.append(_md(f"*Last {window.label}*\n{window.total} submitted\n{body}"))
    blocks: list[Block] = [_header("signoff stats"), SectionBlock(fields=fields)]
    if stats.decided:
        times = (
            f"*Time to decision* (last 7 days, {stats.decided} decisions by people)\n"
            f"median *{duration(stats.median_s)}* · p90 *{duration(stats.p90_s)}*"
        )
    else:
        times = "*Time to decision*\nNobody decided anything in the last 7 days."
    blocks.append(SectionBlock(text=_md(times)))
    if stats.tools:
        lines = [f"{i}. `{fit_mrkdwn(tool, 64)[0]}` — {n}" for i, (tool, n) in enumerate(stats.tools, 1)]
        blocks.append(SectionBlock(text=_md("*Busiest tools* (last 7 days)\n" + "\n".join(lines))))
    if stats.reviewers:
        lines = [f"{_who(rid, name)} — {n}" for rid, name, n in stats.reviewers]
        blocks.append(SectionBlock(text=_md("*Decisions per reviewer* (last 7 days)\n" + "\n".join(lines))))
    blocks.append(ContextBlock(elements=[_md(f"As of {slack_date(stats.at)}")]))
    day = stats.windows[0]
    return _message(f"signoff stats: {day.total} submitted in the last {day.label}", blocks)


def _who(rid: str, name: str) -> str:
    if rid[:1] in ("U", "W") and rid[1:].isalnum() and rid.isupper():
        return f"<@{rid}>"
    return fit_mrkdwn(name, 100)[0]


def error_reply(message: str) -> dict[str, Any]:
    """A command that could not be answered: what was wrong, and how to ask instead."""
    blocks: list[Block] = [SectionBlock(text=_md(f":warning: {message}")),
                           ContextBlock(elements=[_md(f"`{SLASH_COMMAND} help` lists what signoff understands.")])]
    return _message(message, blocks)
