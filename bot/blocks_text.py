"""Text helpers for Block Kit: escaping, length as Slack counts it, cutting to a limit, dates and mentions.

Every length here is counted in UTF-16 code units (``slack_len``): Slack's clients are JavaScript, and a
count that never undercounts an emoji keeps a text that passes our checks inside Slack's limits too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from slack_sdk.models.messages import DateLink

ELLIPSIS = "…"
# C0 controls other than tab and newline, DEL, and lone surrogates: Slack refuses or mangles them.
_UNSHOWABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")
_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
_SLACK_GROUP = re.compile(r"^S[A-Z0-9]{2,}$")


def escape_mrkdwn(text: str) -> str:
    """Escape the three characters Slack's mrkdwn gives meaning to (and nothing else)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_len(text: str) -> int:
    """Length in UTF-16 code units, the unit our limits count."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def clean(text: str) -> str:
    """Make text showable: CRLF becomes LF, control characters their visible symbol, lone surrogates U+FFFD."""
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
    if _UNSHOWABLE.search(text) is None:
        return text
    return text.translate(_SHOWN)


_SHOWN = {c: 0x2400 + c for c in range(0x20) if c not in (0x09, 0x0A)}
_SHOWN[0x7F] = 0x2421
_SHOWN.update({c: 0xFFFD for c in range(0xD800, 0xE000)})


def _fit_prefix(text: str, limit: int, measure: Callable[[str], int]) -> int:
    """The largest k with measure(text[:k]) <= limit; measure grows with k by at least one per character."""
    lo, hi = 0, min(len(text), max(limit, 0))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if measure(text[:mid]) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return lo


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` units, ending in an ellipsis when something was cut."""
    if slack_len(text) <= limit:
        return text
    if limit < 1:
        return ""
    return text[: _fit_prefix(text, limit - 1, slack_len)] + ELLIPSIS


def fit_mrkdwn(raw: str, limit: int) -> tuple[str, bool]:
    """``raw`` cleaned and escaped for mrkdwn within ``limit`` units; the flag says whether it was cut.

    Cutting happens on the raw text, so an escape such as ``&amp;`` is never split.
    """
    text = clean(raw)
    escaped = escape_mrkdwn(text)
    if slack_len(escaped) <= limit:
        return escaped, False
    k = _fit_prefix(text, limit - 1, lambda s: slack_len(escape_mrkdwn(s)))
    return escape_mrkdwn(text[:k]) + ELLIPSIS, True


def fit_plain(raw: str, limit: int) -> tuple[str, bool]:
    """``raw`` cleaned for a plain_text object within ``limit`` units (no escaping: plain text shows as is)."""
    text = clean(raw)
    cut = truncate(text, limit)
    return cut, cut != text


def _code_body(text: str) -> str:
    # A run of three backticks would close the block early; a zero-width space breaks the run.
    text = text.replace("```", "``\u200b`")
    if text.startswith("`"):
        text = "\u200b" + text
    if text.endswith("`"):
        text += "\u200b"
    return text


def render_quote(text: str) -> str:
    """Text (already cleaned) as a mrkdwn block quote."""
    return "\n".join("> " + line for line in escape_mrkdwn(text).split("\n"))


def fit_quote(raw: str, limit: int) -> tuple[str, bool]:
    """``raw`` as a block quote within ``limit`` units (the quote marks count too)."""
    text = clean(raw)
    whole = render_quote(text)
    if slack_len(whole) <= limit:
        return whole, False
    k = _fit_prefix(text, limit - 1, lambda s: slack_len(render_quote(s)))
    return render_quote(text[:k] + ELLIPSIS), True


def render_code(text: str) -> str:
    """Text (already cleaned) as a mrkdwn code block."""
    return "```" + escape_mrkdwn(_code_body(text)) + "```"


def fit_code(raw: str, limit: int) -> tuple[str, bool]:
    """``raw`` as a mrkdwn code block within ``limit`` units (fences included)."""
    text = clean(raw)
    whole = render_code(text)
    if slack_len(whole) <= limit:
        return whole, False
    k = _fit_prefix(text, limit - 1, lambda s: slack_len(render_code(s)))
    return render_code(text[:k] + ELLIPSIS), True


def split_chunks(raw: str, limit: int, render: Callable[[str], str], max_chunks: int) -> tuple[list[str], int]:
    """Cut ``raw`` into at most ``max_chunks`` pieces whose rendering fits ``limit``; also the count left out.

    A piece ends after a line break, else after a space, when one falls in its last fifth, so code and
    prose are not cut mid-word.
    """
    chunks: list[str] = []
    start = 0
    while start < len(raw) and len(chunks) < max_chunks:
        window = raw[start : start + limit]  # every character costs at least one unit
        k = _fit_prefix(window, limit, lambda s: slack_len(render(s)))
        if k == 0:
            break
        if start + k < len(raw):
            for sep in ("\n", " "):
                at = window.rfind(sep, 0, k)
                if at >= k * 4 // 5:
                    k = at + 1
                    break
        chunks.append(render(window[:k]))
        start += k
    return chunks, len(raw) - start


def as_text(value: Any) -> str:
    """An argument's value as a reviewer reads it: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


def compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 string (or datetime) from the request JSON as an aware UTC datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def slack_date(when: datetime) -> str:
    """A date Slack shows in the reader's timezone, with a UTC fallback for clients that cannot."""
    fallback = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return str(DateLink(date=when, date_format="{date_short_pretty} {time}", fallback=fallback))


def is_slack_user(value: Any) -> bool:
    return isinstance(value, str) and bool(_SLACK_USER.match(value))


def mention(ref: str) -> str:
    """``<@U…>`` for users, ``<!subteam^S…>`` for user groups, the escaped text for anything else."""
    if is_slack_user(ref):
        return f"<@{ref}>"
    if _SLACK_GROUP.match(ref):
        return f"<!subteam^{ref}>"
    return escape_mrkdwn(clean(ref))


def person(ref: Mapping[str, Any] | None, names: Mapping[str, str] | None = None, *, mrkdwn: bool = True) -> str:
    """Who someone is: a mention when the id is a Slack user id, else their name (or id).

    ``mrkdwn=False`` gives a plain name for notification text, looked up in ``names`` when possible.
    """
    ref = ref or {}
    rid = ref.get("id")
    name = ref.get("name") or rid or "someone"
    if mrkdwn:
        return f"<@{rid}>" if is_slack_user(rid) else escape_mrkdwn(clean(str(name)))
    if names and isinstance(rid, str) and rid in names:
        return names[rid]
    return str(name)
