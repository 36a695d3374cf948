"""Pure Block Kit builders for the scheduler's nudges: reminders, escalations and deadline extensions.

Values in (a request's public JSON, ``bot.serialize.request_json``), ``{"text", "blocks"}`` out. The
escalation channel's message links the card with ``CARD_LINK``, which the delivery replaces with the card's
permalink when it posts (the card may not be posted yet when the escalation is queued).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.models.blocks import ContextBlock, SectionBlock
from slack_sdk.models.blocks.basic_components import MarkdownTextObject

from bot.blocks_text import fit_mrkdwn, mention, parse_time, slack_date, truncate

CARD_LINK = "{{card_permalink}}"
SUMMARY_CHARS = 300
TEXT_CHARS = 3000


def age_text(delta: timedelta) -> str:
    """``45 s``, ``12 min``, ``2 h 5 min``, ``3 d 4 h``: how long something has waited."""
    s = max(0, int(delta.total_seconds()))
    if s < 60:
        return f"{s} s"
    m = s // 60
    if m < 60:
        return f"{m} min"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(h, 24)
    return f"{d} d {h} h" if h else f"{d} d"


def mentions(ids: Sequence[str]) -> str:
    return " ".join(mention(i) for i in ids)


def tool_and_agent(req: Mapping[str, Any]) -> tuple[str, str]:
    """The request's tool and agent, escaped for mrkdwn."""
    tool, _ = fit_mrkdwn(str((req.get("action") or {}).get("tool") or "?"), 64)
    agent, _ = fit_mrkdwn(str(req.get("agent") or "?"), 128)
    return tool, agent


def _summary(req: Mapping[str, Any]) -> str:
    summary = str((req.get("context") or {}).get("summary") or "")
    if not summary.strip():
        return ""
    text, _ = fit_mrkdwn(" ".join(summary.split()), SUMMARY_CHARS)
    return f"\n>{text}"


def _deadline(req: Mapping[str, Any]) -> str:
    when = parse_time(req.get("expires_at"))
    return slack_date(when) if when is not None else "at its deadline"


def _waited(req: Mapping[str, Any], now: datetime) -> str:
    created = parse_time(req.get("created_at"))
    return age_text(now - created) if created is not None else "a while"


def _message(text: str, body: str, note: str | None = None) -> dict[str, Any]:
    blocks: list[Any] = [SectionBlock(text=MarkdownTextObject(text=truncate(body, TEXT_CHARS)))]
    if note:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=truncate(note, TEXT_CHARS))]))
    return {"text": truncate(text, TEXT_CHARS), "blocks": [b.to_dict() for b in blocks]}


def reminder_reply(req: Mapping[str, Any], *, n: int, of: int | None, now: datetime) -> dict[str, Any]:
    """The thread reply on the card: the reviewers, mentioned, are asked again."""
    who = mentions(list(req.get("reviewers") or [])) or "Reviewers"
    count = f" ({n} of {of})" if of and of > 1 else ""
    body = (f":bell: *Reminder{count}:* {who}, this request has waited {_waited(req, now)} for a decision. "
            f"It expires {_deadline(req)}.")
    return _message(f"Reminder{count}: a request is waiting for your decision", body)


def escalation_post(req: Mapping[str, Any], *, mention_ids: Sequence[str], reason: str, now: datetime,
                    linked: bool = True) -> dict[str, Any]:
    """The message in the escalation channel: what waits, why it is escalated, a link to the card
    (``linked=False`` when the request has no card: the CLI command that shows it instead)."""
    cc = mentions(mention_ids)
    risk, _ = fit_mrkdwn(str(req.get("risk") or "medium"), 16)
    tool, agent = tool_and_agent(req)
    where = f"<{CARD_LINK}|Open the card>" if linked else f"`signoff approvals show {req.get('id')}`"
    body = (f":rotating_light: *Escalated:* *{tool}* from `{agent}` ({risk} risk) {reason}.{_summary(req)}\n"
            f"{where} · expires {_deadline(req)}" + (f"\ncc {cc}" if cc else ""))
    text = f"Escalated: {tool} from {agent} {reason}"
    return _message(text, body, f"Request `{req.get('id')}` · waiting {_waited(req, now)}")


def escalation_reply(req: Mapping[str, Any], *, channel: str | None, mention_ids: Sequence[str], label: str,
                     reason: str) -> dict[str, Any]:
    """The thread reply on the card saying it was escalated, and to whom."""
    to = [f"<#{channel}>"] if channel else []
    if mention_ids:
        to.append(mentions(mention_ids))
    where = f" to {' and '.join(to)}" if to else ""
    tag, _ = fit_mrkdwn(label, 64)
    body = f":rotating_light: *Escalated*{where}: this request {reason}. It is labelled `{tag}`."
    return _message(f"Escalated: this request {reason}", body)


def extension_reply(req: Mapping[str, Any]) -> dict[str, Any]:
    """The thread reply when an already escalated request reaches its deadline and gets its one extension."""
    body = (f":hourglass_flowing_sand: The deadline passed without a decision; it is extended once, "
            f"to {_deadline(req)}. After that the request expires.")
    return _message("The deadline was extended once", body)
