"""How a card shows an action's arguments: an email as an email, SQL and shell as code, an HTTP call as a
request, anything else as fields; and how values cut on a card are named for the "View full" modal.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.models.blocks import Block, ButtonElement, SectionBlock
from slack_sdk.models.blocks.basic_components import MarkdownTextObject

from bot.blocks_text import (
    as_text,
    clean,
    compact_json,
    escape_mrkdwn,
    fit_code,
    fit_mrkdwn,
    slack_len,
    truncate,
)
from bot.ids import Action

EMAIL_HEADERS = ("from", "to", "cc", "bcc", "reply_to", "subject")
EMAIL_BODIES = ("body", "text", "html", "content")
HTTP_BODIES = ("body", "json", "data", "payload")
SQL_KEYS = ("sql", "query", "statement")
SHELL_KEYS = ("command", "cmd", "script")

CODE_CHARS = 2500  # an email body, query or command on a pending card
LONG_ARG_CHARS = 600  # any other long value on a pending card
SHORT_ARG = 60  # a value this short, on one line, shares a row of fields
FIELD_VALUE = 300  # an email header or a short field
CHANGE_SIDE = 100  # each side of "old → new"
NAME_CHARS = 80  # an argument's name as shown
CARD_ARG_CHARS = 9000  # all argument text on a pending card; the rest is one click away
DECIDED_CHARS = (700, 300, 3000)  # the same three on a decided card, which is about the decision
FIELD_REF_NAME = 1800  # longest name that travels in a button value; longer ones go by position
_SEP = "|"


def view_full_value(request_id: str, ref: str) -> str:
    """The ``value`` of a "View full" button: the request id and which value to show."""
    return f"{request_id}{_SEP}{ref}"


def parse_view_full_value(value: str) -> tuple[str, str]:
    """The request id and the value reference from a "View full" button's ``value``."""
    request_id, _, ref = value.partition(_SEP)
    return request_id, ref


def arg_ref(prefix: str, args: Mapping[str, Any], name: str) -> str:
    """``prefix:NAME``, or ``prefix#INDEX`` when the name is too long for a button value."""
    if slack_len(name) <= FIELD_REF_NAME:
        return f"{prefix}:{name}"
    return f"{prefix}#{list(args).index(name)}"


def resolve_arg_ref(args: Mapping[str, Any], ref: str) -> str | None:
    """The argument name an ``arg_ref`` (without its prefix) points at, if it is still there."""
    if ref.startswith(":"):
        name = ref[1:]
        return name if name in args else None
    if ref.startswith("#") and ref[1:].isdigit():
        index = int(ref[1:])
        names = list(args)
        return names[index] if index < len(names) else None
    return None


@dataclass
class CardContext:
    """What a builder needs to offer "View full": the request, and whether the card still has buttons."""

    request_id: str
    interactive: bool
    cut: list[str] = field(default_factory=list)
    code_chars: int = CODE_CHARS
    long_chars: int = LONG_ARG_CHARS
    chars_left: int = CARD_ARG_CHARS

    @classmethod
    def for_card(cls, request_id: str, *, pending: bool) -> CardContext:
        if pending:
            return cls(request_id=request_id, interactive=True)
        code, long, total = DECIDED_CHARS
        return cls(request_id=request_id, interactive=False, code_chars=code, long_chars=long, chars_left=total)

    def more(self, ref: str) -> ButtonElement | None:
        """Remember that the value ``ref`` was cut; the "View full" button when the card is interactive."""
        self.cut.append(ref)
        if not self.interactive:
            return None
        return ButtonElement(text="View full", action_id=Action.VIEW_FULL, value=view_full_value(self.request_id, ref))


def section(text: str, accessory: ButtonElement | None = None) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text), accessory=accessory)


def arg_kind(tool: str, args: Mapping[str, Any]) -> tuple[str, str | None]:
    """Which renderer fits, and the argument holding the code for ``sql`` and ``shell``."""
    t = tool.lower()
    sql_key = next((k for k in SQL_KEYS if isinstance(args.get(k), str)), None)
    shell_key = next((k for k in SHELL_KEYS if _is_command(args.get(k))), None)
    has_email = any(k in args for k in (*EMAIL_HEADERS, *EMAIL_BODIES))
    if "mail" in t and has_email:
        return "email", None
    if "sql" in t and sql_key:
        return "sql", sql_key
    if any(word in t for word in ("shell", "bash", "exec")) and shell_key:
        return "shell", shell_key
    if isinstance(args.get("method"), str) and isinstance(args.get("url"), str):
        return "http", None
    if "to" in args and ("subject" in args or "body" in args):
        return "email", None
    if sql_key in ("sql", "query"):
        return "sql", sql_key
    if shell_key in ("command", "cmd"):
        return "shell", shell_key
    return "fields", None


def _is_command(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)
    )


def arg_blocks(tool: str, args: Mapping[str, Any], ctx: CardContext, *, max_blocks: int) -> list[Block]:
    """The arguments as card blocks, at most ``max_blocks`` of them (one is kept for "and N more")."""
    kind, code_key = arg_kind(tool, args)
    rest = dict(args)
    blocks: list[Block] = []
    if kind == "email":
        blocks += _email(args, rest, ctx)
    elif kind == "http":
        blocks += _http(args, rest, ctx)
    elif code_key is not None:
        blocks.append(_code_section(args, code_key, rest, ctx, label=code_key))
    blocks += _fields(args, rest, ctx, max_blocks=max_blocks - 1 - len(blocks))
    if rest:
        n = len(rest)
        note = f"_…and {n} more argument{'s' if n != 1 else ''} not shown here._"
        blocks.append(section(note, ctx.more("args")))
    return blocks


def _spend(ctx: CardContext, limit: int) -> int:
    """How much of the card's argument budget one value may use (always enough for a glimpse)."""
    return max(min(limit, ctx.chars_left), 200)


def _code_section(
    args: Mapping[str, Any], key: str, rest: dict[str, Any], ctx: CardContext, *, label: str
) -> SectionBlock:
    value = args[key]
    source = value if isinstance(value, str) else shlex.join(value) if _is_command(value) else as_text(value)
    head = f"*{_name(label)}*\n"
    code, cut = fit_code(source, _spend(ctx, ctx.code_chars) - slack_len(head)) if source else ("_(empty)_", False)
    rest.pop(key, None)
    ctx.chars_left -= slack_len(code)
    return section(head + code, ctx.more(arg_ref("arg", args, key)) if cut else None)


def _email(args: Mapping[str, Any], rest: dict[str, Any], ctx: CardContext) -> list[Block]:
    fields: list[MarkdownTextObject] = []
    cut_ref: str | None = None
    for key in EMAIL_HEADERS:
        if key not in args:
            continue
        value = args[key]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            shown = ", ".join(value)
        else:
            shown = value if isinstance(value, str) else compact_json(value)
        text, cut = fit_mrkdwn(shown, FIELD_VALUE) if shown else ("_(empty)_", False)
        if cut and cut_ref is None:
            cut_ref = arg_ref("arg", args, key)
        fields.append(MarkdownTextObject(text=f"*{key.replace('_', '-').title()}*\n{text}"))
        rest.pop(key)
    blocks: list[Block] = []
    if fields:
        ctx.chars_left -= sum(slack_len(f.text) for f in fields)
        blocks.append(SectionBlock(fields=fields, accessory=ctx.more(cut_ref) if cut_ref else None))
    body_key = next((k for k in EMAIL_BODIES if isinstance(args.get(k), str)), None)
    if body_key is not None:
        blocks.append(_code_section(args, body_key, rest, ctx, label=body_key.title()))
    return blocks


def _http(args: Mapping[str, Any], rest: dict[str, Any], ctx: CardContext) -> list[Block]:
    method, url = str(args["method"]).upper(), str(args["url"])
    line, cut = fit_code(f"{method} {url}", 1200)
    rest.pop("method")
    rest.pop("url")
    blocks: list[Block] = [section(f"*Request*\n{line}", ctx.more(arg_ref("arg", args, "url")) if cut else None)]
    headers = args.get("headers")
    if isinstance(headers, Mapping):
        lines = "\n".join(f"{k}: {v if isinstance(v, str) else compact_json(v)}" for k, v in headers.items())
        code, cut = fit_code(lines, 1000) if lines else ("_(none)_", False)
        blocks.append(section(f"*Headers*\n{code}", ctx.more(arg_ref("arg", args, "headers")) if cut else None))
        rest.pop("headers")
    body_key = next((k for k in HTTP_BODIES if k in args), None)
    if body_key is not None:
        blocks.append(_code_section(args, body_key, rest, ctx, label=body_key.title()))
    return blocks


def _name(name: str) -> str:
    return fit_mrkdwn(name, NAME_CHARS)[0] or "\u200b"


def inline_value(value: Any, limit: int, *, code: bool = True) -> tuple[str, bool]:
    """A value on one line: inline code when it can be (strings may opt out), else escaped text."""
    shown = clean(value if isinstance(value, str) else compact_json(value)).replace("\n", "↵ ")
    if not shown:
        return "_(empty)_", False
    cut_text = truncate(shown, limit)
    cut = cut_text != shown
    if "`" in cut_text or (isinstance(value, str) and not code):
        return escape_mrkdwn(cut_text), cut
    return f"`{escape_mrkdwn(cut_text)}`", cut


def _fields(args: Mapping[str, Any], rest: dict[str, Any], ctx: CardContext, *, max_blocks: int) -> list[Block]:
    """Short values two to a row (ten to a block); long ones each in their own section."""
    short = [k for k, v in rest.items() if _is_short(v)]
    long = [k for k in rest if k not in set(short)]
    blocks: list[Block] = []
    for start in range(0, len(short), 10):
        if len(blocks) >= max_blocks or ctx.chars_left <= 0:
            return blocks
        group = short[start : start + 10]
        fields = []
        for key in group:
            value, _ = inline_value(args[key], SHORT_ARG + 10, code=False)
            fields.append(MarkdownTextObject(text=f"*{_name(key)}*\n{value}"))
            rest.pop(key)
        ctx.chars_left -= sum(slack_len(f.text) for f in fields)
        blocks.append(SectionBlock(fields=fields))
    for key in long:
        if len(blocks) >= max_blocks or ctx.chars_left <= 0:
            return blocks
        value = args[key]
        head = f"*{_name(key)}*\n"
        limit = _spend(ctx, ctx.long_chars) - slack_len(head)
        if isinstance(value, str) and "\n" not in value:
            text, cut = fit_mrkdwn(value, limit)
        else:
            text, cut = fit_code(as_text(value), limit)
        ctx.chars_left -= slack_len(text)
        rest.pop(key)
        blocks.append(section(head + text, ctx.more(arg_ref("arg", args, key)) if cut else None))
    return blocks


def _is_short(value: Any) -> bool:
    if isinstance(value, str):
        return slack_len(value) <= SHORT_ARG and "\n" not in value
    return slack_len(compact_json(value)) <= SHORT_ARG


def change_lines(before: Mapping[str, Any], after: Mapping[str, Any], names: list[str]) -> list[tuple[str, str | None]]:
    """One line per changed argument (old → new, each side cut short) and the value to view when cut."""
    lines = []
    for name in names:
        old, old_cut = inline_value(before[name], CHANGE_SIDE) if name in before else ("_(added)_", False)
        new, new_cut = inline_value(after[name], CHANGE_SIDE) if name in after else ("_(removed)_", False)
        ref = None
        if new_cut:
            ref = arg_ref("arg", after, name)
        elif old_cut:
            ref = arg_ref("old", before, name)
        lines.append((f"• *{_name(name)}*: {old} → {new}", ref))
    return lines
