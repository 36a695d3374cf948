"""``/signoff`` parsed: pure functions from the command's text to what was asked, and the page references that
Next / Previous buttons carry. No I/O.

    pending [label:X] [tool:X] [agent:X] [risk:X] [channel:X]   (alias: drafts; also the default)
    mine [filters]      show <id>      stats      grants      help
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, fields, replace

from bot.domain import RISKS
from bot.errors import ValidationFailed
from bot.ids import SLASH_COMMAND

SUBCOMMANDS = ("pending", "mine", "show", "stats", "grants", "help")
ALIASES = {"drafts": "pending"}
FILTERS = ("label", "tool", "agent", "risk", "channel")
FILTERED = ("pending", "mine")
PAGE_SIZE = 10
MAX_VALUE = 128
REQUEST_ID = re.compile(r"^req_[0-9a-z]{26}$")
_CHANNEL = re.compile(r"^<#([CG][A-Z0-9]{2,})(?:\|[^>]*)?>$|^([CG][A-Z0-9]{2,})$")

USAGE = (
    f"`{SLASH_COMMAND} pending` (or `drafts`) lists what waits for a decision; narrow it with "
    "`label:` `tool:` `agent:` `risk:` `channel:`, e.g. "
    f"`{SLASH_COMMAND} pending tool:send_email risk:high`\n"
    f"`{SLASH_COMMAND} mine` lists what you may decide\n"
    f"`{SLASH_COMMAND} show req_…` shows one request's card, with its buttons\n"
    f"`{SLASH_COMMAND} stats` shows counts, decision times, the busiest tools and who decided\n"
    f"`{SLASH_COMMAND} grants` lists the standing grants made with *Approve + allow*, to revoke them\n"
    f"`{SLASH_COMMAND} help` shows this"
)


class CommandError(ValidationFailed):
    """The text of ``/signoff`` made no sense; the message says what was wrong and how to ask instead."""


@dataclass(frozen=True)
class Filters:
    label: str | None = None
    tool: str | None = None
    agent: str | None = None
    risk: str | None = None
    channel: str | None = None

    def terms(self) -> list[str]:
        return [f"{f.name}:{getattr(self, f.name)}" for f in fields(self) if getattr(self, f.name) is not None]

    def __bool__(self) -> bool:
        return bool(self.terms())


@dataclass(frozen=True)
class Command:
    name: str  # one of SUBCOMMANDS
    filters: Filters = Filters()
    request_id: str | None = None

    def text(self) -> str:
        """The canonical text of this command (what a page reference carries)."""
        if self.name == "show":
            return f"show {self.request_id}"
        return " ".join([self.name, *self.filters.terms()])


def parse(text: str) -> Command:
    """``text`` as typed after ``/signoff``; raises ``CommandError`` with a helpful message."""
    words = text.split()
    if not words:
        return Command("pending")
    head, rest = words[0].lower(), words[1:]
    name = ALIASES.get(head, head)
    if name not in SUBCOMMANDS:
        if ":" in head:  # "/signoff tool:x" means the pending list
            return Command("pending", _filters(words))
        close = difflib.get_close_matches(head, [*SUBCOMMANDS, *ALIASES], n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        raise CommandError(f"`{_shown(words[0])}` is not a {SLASH_COMMAND} subcommand.{hint}\n{USAGE}")
    if name in FILTERED:
        return Command(name, _filters(rest))
    if name == "show":
        if len(rest) != 1:
            raise CommandError(f"`{SLASH_COMMAND} show` takes one request id, e.g. "
                               f"`{SLASH_COMMAND} show req_01jd4x8k2m3n4p5q6r7s8t9v0w`.")
        rid = rest[0].strip("`").lower()
        if not REQUEST_ID.match(rid):
            raise CommandError(f"`{_shown(rest[0])}` is not a request id; ids look like "
                               f"`req_01jd4x8k2m3n4p5q6r7s8t9v0w` (see `{SLASH_COMMAND} pending`).")
        return Command("show", request_id=rid)
    if rest:
        raise CommandError(f"`{SLASH_COMMAND} {name}` takes no arguments (got `{_shown(' '.join(rest))}`).")
    return Command(name)


def _filters(words: list[str]) -> Filters:
    found: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition(":")
        key = key.lower()
        if not sep:
            raise CommandError(f"`{_shown(word)}` is not a filter. Filters look like `tool:send_email`; "
                               f"use {', '.join(f'`{f}:`' for f in FILTERS)}.")
        if key not in FILTERS:
            close = difflib.get_close_matches(key, FILTERS, n=1)
            hint = f" Did you mean `{close[0]}:`?" if close else ""
            raise CommandError(f"`{_shown(key)}:` is not a filter.{hint} "
                               f"Use {', '.join(f'`{f}:`' for f in FILTERS)}.")
        if key in found:
            raise CommandError(f"`{key}:` is given twice; give each filter once.")
        found[key] = _value(key, value)
    return Filters(**found)


def _value(key: str, value: str) -> str:
    if not value:
        raise CommandError(f"`{key}:` needs a value, e.g. `{key}:{_EXAMPLE[key]}`.")
    if len(value) > MAX_VALUE:
        raise CommandError(f"`{key}:` is longer than {MAX_VALUE} characters.")
    if key == "risk":
        if value.lower() not in RISKS:
            raise CommandError(f"`risk:{_shown(value)}` is not a risk; use one of "
                               f"{', '.join(f'`{r}`' for r in RISKS)}.")
        return value.lower()
    if key == "channel":
        m = _CHANNEL.match(value)
        if m is None:
            raise CommandError(f"`channel:{_shown(value)}` is not a channel; mention it (`channel:#approvals`, "
                               "picked from the list Slack offers) or give its id (`channel:C0APPROVALS`).")
        return m.group(1) or m.group(2)
    return value


_EXAMPLE = {"label": "escalation", "tool": "send_email", "agent": "billing-bot", "risk": "high",
            "channel": "C0APPROVALS"}


def _shown(text: str) -> str:
    """User text inside an inline code span of an error message: cut, and without backticks."""
    text = text.replace("`", "'")
    return text if len(text) <= 60 else text[:59] + "…"


# --- page references ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageRef:
    """Which page of which list: Next carries ``before`` (the last id shown), Previous ``after`` (the first)."""

    command: Command
    page: int = 1
    before: str | None = None
    after: str | None = None


def encode_page(ref: PageRef) -> str:
    """A button value (Slack allows 2,000 characters; filters are cut to 128 each, so this stays far below)."""
    data: dict[str, object] = {"q": ref.command.text(), "p": ref.page}
    if ref.before:
        data["b"] = ref.before
    if ref.after:
        data["a"] = ref.after
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def decode_page(value: str) -> PageRef:
    try:
        data = json.loads(value)
        command = parse(str(data["q"]))
        page = int(data.get("p", 1))
        before, after = data.get("b"), data.get("a")
    except (ValueError, KeyError, TypeError):
        raise CommandError(f"That page is no longer available; run `{SLASH_COMMAND} pending` again.") from None
    for cursor in (before, after):
        if cursor is not None and not (isinstance(cursor, str) and REQUEST_ID.match(cursor)):
            raise CommandError(f"That page is no longer available; run `{SLASH_COMMAND} pending` again.")
    if command.name not in FILTERED:
        raise CommandError(f"Only `{SLASH_COMMAND} pending` and `mine` have pages.")
    return PageRef(command, max(1, page), before, after)


def next_page(ref: PageRef, last_id: str) -> PageRef:
    return replace(ref, page=ref.page + 1, before=last_id, after=None)


def previous_page(ref: PageRef, first_id: str) -> PageRef:
    return replace(ref, page=max(1, ref.page - 1), before=None, after=first_id)
