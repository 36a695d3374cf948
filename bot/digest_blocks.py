"""Pure Block Kit builder for a digest: the pending requests carrying some labels, grouped by label.

Values in (groups of public request JSON, oldest first), ``{"text", "blocks"}`` out. A request carrying
several of the digest's labels is listed under each, like ``/signoff pending label:…`` lists it. A group shows
at most ``per_label`` requests and ends with "and N more" and the command that lists them all; groups are cut
further when the message would pass Slack's 50 blocks, and every section stays within 3000 characters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import Block, ContextBlock, DividerBlock, HeaderBlock, SectionBlock
from slack_sdk.models.blocks.basic_components import MarkdownTextObject, PlainTextObject

from bot.blocks_text import fit_mrkdwn, fit_plain, parse_time, slack_date, slack_len, truncate
from bot.schedule_blocks import age_text, tool_and_agent

MESSAGE_BLOCKS = 50
SECTION_CHARS = 3000
PER_LABEL = 10
SUMMARY_CHARS = 150


@dataclass(frozen=True)
class DigestGroup:
    """The first requests (oldest first) pending under ``label``, and how many are pending in all."""

    label: str
    requests: Sequence[Mapping[str, Any]]
    total: int


def pending_command(label: str) -> str:
    return f"/signoff pending label:{label}"


def item_line(req: Mapping[str, Any], *, now: datetime) -> str:
    """One request: its tool linked to the card, agent, age and summary."""
    tool, agent = tool_and_agent(req)
    permalink = (req.get("slack") or {}).get("permalink")
    head = f"<{permalink}|*{tool}*>" if permalink else f"*{tool}* `{req.get('id')}`"
    created = parse_time(req.get("created_at"))
    age = f"waiting {age_text(now - created)}" if created is not None else "waiting"
    line = f"• {head} · `{agent}` · {age}"
    summary = str((req.get("context") or {}).get("summary") or "").strip()
    if summary:
        text, _ = fit_mrkdwn(" ".join(summary.split()), SUMMARY_CHARS)
        line += f"\n      {text}"
    return line


def _pack(lines: Sequence[str]) -> list[str]:
    """Join lines into as few texts as fit a section each."""
    out: list[str] = []
    current = ""
    for line in lines:
        line = truncate(line, SECTION_CHARS)
        joined = f"{current}\n{line}" if current else line
        if slack_len(joined) <= SECTION_CHARS:
            current = joined
        else:
            out.append(current)
            current = line
    if current:
        out.append(current)
    return out


def _md(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=text)


def _group_blocks(group: DigestGroup, *, shown: int, now: datetime) -> list[Block]:
    label, _ = fit_mrkdwn(group.label, 64)
    title = f"*`{label}`* — {group.total} pending"
    lines = [item_line(r, now=now) for r in group.requests[:shown]]
    texts = _pack([title, *lines])
    blocks: list[Block] = [SectionBlock(text=_md(t)) for t in texts]
    more = group.total - min(shown, len(group.requests))
    if more > 0:
        blocks.append(ContextBlock(elements=[_md(f"…and {more} more: `{pending_command(label)}`")]))
    return blocks


def digest_message(*, name: str, groups: Sequence[DigestGroup], distinct_total: int, now: datetime,
                   per_label: int = PER_LABEL) -> dict[str, Any]:
    """The digest message. ``distinct_total`` counts each request once, whatever its labels."""
    labels = [g.label for g in groups]
    header, _ = fit_plain(f"Digest: {name}", 150)
    shown_labels = ", ".join(f"`{fit_mrkdwn(lb, 64)[0]}`" for lb in labels)
    noun = "request" if distinct_total == 1 else "requests"
    intro = f"*{distinct_total}* pending {noun} labelled {shown_labels} · oldest first · {slack_date(now)}"
    blocks: list[Block] = [HeaderBlock(text=PlainTextObject(text=header)),
                           ContextBlock(elements=[_md(truncate(intro, SECTION_CHARS))])]
    if distinct_total == 0:
        blocks.append(SectionBlock(text=_md(":white_check_mark: Nothing is waiting under these labels.")))
        return _done(name, distinct_total, blocks)
    empty = [g.label for g in groups if g.total == 0]
    full = [g for g in groups if g.total > 0]
    left_out: list[DigestGroup] = []
    for i, group in enumerate(full):
        # Keep room for a divider and, if later groups do not fit, one closing note.
        room = MESSAGE_BLOCKS - len(blocks) - 2
        shown = per_label
        part = _group_blocks(group, shown=shown, now=now)
        while len(part) > room and shown > 0:
            shown -= 1
            part = _group_blocks(group, shown=shown, now=now)
        if len(part) > room:
            left_out = list(full[i:])
            break
        blocks.append(DividerBlock())
        blocks += part
    notes = []
    if left_out:
        more = ", ".join(f"`{pending_command(fit_mrkdwn(g.label, 64)[0])}`" for g in left_out[:5])
        more += ", …" if len(left_out) > 5 else ""
        count = sum(g.total for g in left_out)
        notes.append(f"…and {count} more under {len(left_out)} more label(s): {more}")
    if empty:
        notes.append("Nothing pending under " + ", ".join(f"`{fit_mrkdwn(lb, 64)[0]}`" for lb in empty) + ".")
    if notes:
        blocks.append(ContextBlock(elements=[_md(truncate(n, SECTION_CHARS)) for n in notes]))
    return _done(name, distinct_total, blocks)


def _done(name: str, total: int, blocks: list[Block]) -> dict[str, Any]:
    noun = "request" if total == 1 else "requests"
    text = truncate(f"Digest {name}: {total} pending {noun}", 3000)
    return {"text": text, "blocks": [b.to_dict() for b in blocks]}
