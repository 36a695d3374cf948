"""Modals: Edit (one typed input per argument), Reject (feedback) and View full (one whole value), and
the parsing of what a reviewer submits. Only the request id and version travel in ``private_metadata``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    InputBlock,
    NumberInputElement,
    Option,
    PlainTextInputElement,
    RadioButtonsElement,
    SectionBlock,
)
from slack_sdk.models.blocks.basic_components import MarkdownTextObject, PlainTextObject
from slack_sdk.models.views import View as ViewModel

from bot.blocks_args import SHELL_KEYS, SQL_KEYS, arg_kind, resolve_arg_ref
from bot.blocks_text import (
    as_text,
    clean,
    compact_json,
    fit_code,
    fit_mrkdwn,
    render_code,
    slack_len,
    split_chunks,
    truncate,
)
from bot.ids import Action, View
from bot.ids import Block as BlockId

VIEW_BLOCKS = 100
INPUT_MAX = 3000
METADATA_MAX = 3000
MULTILINE_AFTER = 80
SAFE_INT = 2**53  # number inputs lose precision beyond this (Slack's clients hold numbers as doubles)
PREVIEW_CHARS = 300
LABEL_CHARS = 300  # an argument name as an input label; longer names are cut
_BOOL = {"true": True, "false": False}


class SubmissionError(ValueError):
    """A modal submission that cannot be accepted; ``errors`` maps block_id to the message to show."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def current_args(req: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments that would run: the edited ones when there are, else the agent's."""
    final = req.get("final_args")
    if isinstance(final, dict):
        return final
    return dict((req.get("action") or {}).get("args") or {})


def parse_modal_metadata(private_metadata: str) -> tuple[str, int | None]:
    """The request id and version a modal was opened for."""
    try:
        meta = json.loads(private_metadata)
    except ValueError:
        return private_metadata, None
    if not isinstance(meta, dict):
        return str(meta), None
    version = meta.get("v")
    return str(meta.get("id")), version if isinstance(version, int) else None


def _metadata(req: Mapping[str, Any], **extra: Any) -> str:
    return compact_json({"id": req.get("id"), "v": req.get("version"), **extra})


def _tool(req: Mapping[str, Any]) -> str:
    return clean(str((req.get("action") or {}).get("tool")))


def _title(text: str) -> PlainTextObject:
    return PlainTextObject(text=truncate(text, 24), emoji=False)


def _intro(req: Mapping[str, Any], extra: str = "") -> ContextBlock:
    text = (
        f"`{fit_mrkdwn(str(req.get('id')), 100)[0]}` from *{fit_mrkdwn(str(req.get('agent')), 200)[0]}*"
        f" · risk *{fit_mrkdwn(str(req.get('risk')), 20)[0]}*"
    )
    return ContextBlock(elements=[MarkdownTextObject(text=text + extra)])


# --- Edit ------------------------------------------------------------------------------------------------


def edit_modal(req: Mapping[str, Any]) -> dict[str, Any]:
    """One typed input per argument of the current args; saving counts as the editor's approval."""
    args = current_args(req)
    names = list(args)
    note = f" · version {req.get('version')}\nSaving approves your edited version; other approvals are cleared."
    blocks: list[Block] = [_intro(req, note)]
    room = VIEW_BLOCKS - len(blocks)
    own = names if len(names) <= room else names[: room - 1]
    by_index: dict[str, str] = {}
    for i, name in enumerate(own):
        block_id = BlockId.ARG + name
        if slack_len(block_id) > 255 or not name.isprintable():
            block_id = f"{BlockId.ARG_INDEX}{i}"
            by_index[str(i)] = name
        blocks.append(_arg_input(name, args[name], block_id))
    extra: dict[str, Any] = {}
    if len(own) < len(names):
        extra["r"] = len(own)
        blocks.append(_rest_input({k: args[k] for k in names[len(own) :]}))
    if not names:
        blocks.append(SectionBlock(text=MarkdownTextObject(text="_This action has no arguments to edit._")))
    metadata = _metadata(req, **extra, n=by_index) if by_index else _metadata(req, **extra)
    if slack_len(metadata) > METADATA_MAX:
        metadata = _metadata(req, **extra)  # the names are found again by position in the args
    view = ViewModel(
        type="modal",
        callback_id=View.EDIT,
        title=_title(f"Edit {_tool(req)}"),
        submit=_title("Save & approve"),
        close=_title("Cancel"),
        private_metadata=metadata,
        blocks=blocks,
    )
    return view.to_dict()


def _label(name: str) -> PlainTextObject:
    return PlainTextObject(text=truncate(clean(name), LABEL_CHARS) or "(unnamed)", emoji=False)


def _hint(text: str) -> PlainTextObject:
    return PlainTextObject(text=text, emoji=False)


def _shown(value: Any) -> str | None:
    """The text an input starts with for a text or JSON value, or None when it cannot fit an input."""
    if isinstance(value, str):
        text = clean(value)
    else:
        text = json.dumps(value, ensure_ascii=False, indent=2)
        if slack_len(text) > INPUT_MAX:
            text = compact_json(value)
    return text if slack_len(text) <= INPUT_MAX else None


def _float_text(value: float) -> str:
    return format(Decimal(repr(value)), "f")


def _arg_input(name: str, value: Any, block_id: str) -> Block:
    if isinstance(value, bool):
        options = [Option(value="true", text="true"), Option(value="false", text="false")]
        element: Any = RadioButtonsElement(
            action_id=Action.ARG_INPUT, options=options, initial_option=options[0 if value else 1]
        )
        return InputBlock(block_id=block_id, label=_label(name), element=element)
    if isinstance(value, int) and abs(value) <= SAFE_INT:
        element = NumberInputElement(action_id=Action.ARG_INPUT, is_decimal_allowed=False, initial_value=str(value))
        return InputBlock(block_id=block_id, label=_label(name), element=element, hint=_hint("A whole number."))
    if isinstance(value, float) and math.isfinite(value):
        element = NumberInputElement(
            action_id=Action.ARG_INPUT, is_decimal_allowed=True, initial_value=_float_text(value)
        )
        return InputBlock(block_id=block_id, label=_label(name), element=element, hint=_hint("A number."))
    shown = _shown(value)
    if shown is None:
        return _read_only(name, value)
    if isinstance(value, str):
        multiline = slack_len(shown) > MULTILINE_AFTER or "\n" in shown
        hint = None
        if shown != value.replace("\r\n", "\n"):
            hint = _hint("Control characters are shown as symbols; if you change this text they are saved as shown.")
    elif isinstance(value, int):
        multiline, hint = False, _hint("A whole number (too large for a number field).")
    else:
        multiline, hint = True, _hint("JSON. Leave empty for null.")
    element = PlainTextInputElement(
        action_id=Action.ARG_INPUT, multiline=multiline, initial_value=shown or None, max_length=INPUT_MAX
    )
    # Text and JSON may be emptied (an empty string, null); a number may not.
    optional = not isinstance(value, int)
    return InputBlock(block_id=block_id, label=_label(name), element=element, hint=hint, optional=optional)


def _read_only(name: str, value: Any) -> SectionBlock:
    size = slack_len(as_text(value))
    preview, _ = fit_code(as_text(value), PREVIEW_CHARS)
    head = f"*{fit_mrkdwn(name, 200)[0]}* — {size:,} characters, too long to edit here; it is kept as it is."
    return SectionBlock(text=MarkdownTextObject(text=f"{head}\n{preview}"))


def _rest_input(rest: dict[str, Any]) -> Block:
    shown = _shown(rest)
    label = f"{len(rest)} more arguments"
    if shown is None:
        size = slack_len(compact_json(rest))
        text = f"*{label}* are too many to edit here ({size:,} characters as JSON); they are kept as they are."
        return SectionBlock(text=MarkdownTextObject(text=text))
    element = PlainTextInputElement(
        action_id=Action.ARG_INPUT, multiline=True, initial_value=shown, max_length=INPUT_MAX
    )
    return InputBlock(
        block_id=BlockId.ARG_REST,
        label=_label(label),
        element=element,
        hint=_hint("A JSON object holding the rest of the arguments."),
    )


def parse_edit_submission(
    view_state_values: Mapping[str, Any], private_metadata: str, original_args: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The edited args, or errors keyed by block_id for ``ack(response_action="errors", errors=...)``.

    A field left as it was shown keeps the original value exactly, even where Slack could not show it
    exactly (control characters, very large numbers, JSON key order).
    """
    try:
        meta = json.loads(private_metadata)
    except ValueError:
        meta = {}
    meta = meta if isinstance(meta, dict) else {}
    names = list(original_args)
    by_index: dict[str, str] = meta["n"] if isinstance(meta.get("n"), dict) else {}
    new = dict(original_args)
    errors: dict[str, str] = {}
    for block_id, actions in view_state_values.items():
        state: Mapping[str, Any] = next(iter(actions.values()), {}) if isinstance(actions, Mapping) else {}
        if block_id == BlockId.ARG_REST:
            start = meta.get("r") if isinstance(meta.get("r"), int) else len(names)
            error = _apply_rest(new, names[start:], state)
            if error:
                errors[block_id] = error
            continue
        if block_id.startswith(BlockId.ARG_INDEX):
            index = block_id[len(BlockId.ARG_INDEX) :]
            name = by_index.get(index) or resolve_arg_ref(original_args, "#" + index)
        elif block_id.startswith(BlockId.ARG):
            name = block_id[len(BlockId.ARG) :]
        else:
            continue
        if name is None or name not in original_args:
            errors[block_id] = "This argument is no longer part of the request; close and press Edit again."
            continue
        try:
            new[name] = _parse_value(original_args[name], state)
        except ValueError as e:
            errors[block_id] = str(e)
    return (None, errors) if errors else (new, {})


def _parse_value(original: Any, state: Mapping[str, Any]) -> Any:
    if isinstance(original, bool):
        selected = (state.get("selected_option") or {}).get("value")
        if selected not in _BOOL:
            raise ValueError("Choose true or false.")
        return _BOOL[selected]
    raw = state.get("value")
    text = "" if raw is None else str(raw)
    if isinstance(original, (int, float)) and not isinstance(original, bool):
        shown = _float_text(original) if isinstance(original, float) else str(original)
        if text.strip() == shown:
            return original
        return _parse_number(text, whole=isinstance(original, int))
    if text == (_shown(original) or ""):
        return original
    if isinstance(original, str):
        return text
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"Not valid JSON: {e.msg} (line {e.lineno}, column {e.colno}).") from None


def _parse_number(text: str, *, whole: bool) -> int | float:
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError("Enter a whole number." if whole else "Enter a number.") from None
    if not number.is_finite():
        raise ValueError("Enter a finite number.")
    if whole:
        if number != number.to_integral_value():
            raise ValueError("Enter a whole number.")
        return int(number)
    return float(number)


def _apply_rest(new: dict[str, Any], rest_names: list[str], state: Mapping[str, Any]) -> str | None:
    text = state.get("value") or ""
    if text == _shown({k: new[k] for k in rest_names}):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        return f"Not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})."
    if not isinstance(value, dict):
        return "Enter a JSON object of argument names and values."
    for name in rest_names:
        new.pop(name, None)
    new.update(value)
    return None


# --- Reject ----------------------------------------------------------------------------------------------


def reject_modal(req: Mapping[str, Any]) -> dict[str, Any]:
    """Asks for the feedback the agent gets back (required)."""
    element = PlainTextInputElement(
        action_id=Action.FEEDBACK_INPUT,
        multiline=True,
        max_length=INPUT_MAX,
        placeholder=PlainTextObject(text="e.g. Use a READ ONLY transaction and limit it to 100 rows."),
    )
    view = ViewModel(
        type="modal",
        callback_id=View.REJECT,
        title=_title(f"Reject {_tool(req)}"),
        submit=_title("Reject"),
        close=_title("Cancel"),
        private_metadata=_metadata(req),
        blocks=[
            _intro(req),
            InputBlock(
                block_id=BlockId.FEEDBACK,
                label=PlainTextObject(text="Why? The agent reads this and can try again differently."),
                element=element,
            ),
        ],
    )
    return view.to_dict()


def parse_reject_submission(values: Mapping[str, Any]) -> str:
    """The feedback text; raises ``SubmissionError`` (keyed by the feedback block) when it is blank."""
    actions = values.get(BlockId.FEEDBACK) or {}
    state: Mapping[str, Any] = next(iter(actions.values()), {})
    text = (state.get("value") or "").strip()
    if not text:
        raise SubmissionError({BlockId.FEEDBACK: "Tell the agent why; feedback is required to reject."})
    return text


# --- View full -------------------------------------------------------------------------------------------


def full_value(req: Mapping[str, Any], ref: str) -> tuple[str, str, bool] | None:
    """What a "View full" reference points at: a label, the whole text, and whether it reads as code."""
    args = current_args(req)
    context = req.get("context") or {}
    if ref == "args":
        return "All arguments", as_text(args), True
    if ref in ("summary", "user_request", "reasoning"):
        value = context.get(ref)
        label = {"summary": "Summary", "user_request": "The user asked", "reasoning": "Agent's reasoning"}[ref]
        return (label, value, False) if isinstance(value, str) else None
    if ref == "feedback":
        feedback = (req.get("decision") or {}).get("feedback")
        return ("Feedback", feedback, False) if isinstance(feedback, str) else None
    if ref == "result":
        result = req.get("result") or {}
        return ("Result", as_text(result.get("detail")), False) if result else None
    original = (req.get("action") or {}).get("args") or {}
    for prefix, source, label in (("arg", args, ""), ("old", original, "Before edit: ")):
        if ref.startswith(prefix) and ref[len(prefix) : len(prefix) + 1] in (":", "#"):
            name = resolve_arg_ref(source, ref[len(prefix) :])
            if name is None:
                return None
            value = source[name]
            _, code_key = arg_kind(_tool(req), source)
            code = not isinstance(value, str) or name in (code_key, *SQL_KEYS, *SHELL_KEYS)
            return label + name, as_text(value), code
    return None


def view_full_modal(req: Mapping[str, Any], field: str) -> dict[str, Any]:
    """The whole of one value, over as many blocks as a modal allows."""
    found = full_value(req, field)
    blocks: list[Block] = []
    if found is None:
        blocks.append(_intro(req))
        blocks.append(SectionBlock(text=MarkdownTextObject(text="That value is no longer part of this request.")))
    else:
        label, text, code = found
        blocks.append(_intro(req))
        size = f"{slack_len(text):,} character{'s' if slack_len(text) != 1 else ''}"
        blocks.append(SectionBlock(text=MarkdownTextObject(text=f"*{fit_mrkdwn(label, 500)[0]}*  ·  {size}")))
        text = clean(text)
        if not text:
            blocks.append(SectionBlock(text=MarkdownTextObject(text="_(empty)_")))
        else:
            room = VIEW_BLOCKS - len(blocks) - 1
            chunks, left = split_chunks(text, 3000, render_code if code else (lambda s: s), room)
            for chunk in chunks:
                body = MarkdownTextObject(text=chunk) if code else PlainTextObject(text=chunk, emoji=False)
                blocks.append(SectionBlock(text=body))
            if left:
                where = f"`signoff approvals show {fit_mrkdwn(str(req.get('id')), 100)[0]}`"
                note = (
                    f":information_source: {left:,} more characters are left out here; {where} prints the whole value."
                )
                blocks.append(ContextBlock(elements=[MarkdownTextObject(text=note)]))
    view = ViewModel(
        type="modal",
        callback_id=View.VIEW_FULL,
        title=_title("Full value"),
        close=_title("Close"),
        private_metadata=_metadata(req),
        blocks=blocks,
    )
    return view.to_dict()
