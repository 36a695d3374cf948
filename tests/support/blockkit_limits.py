"""Block Kit limits as Slack enforces them (``shared/slack/SLACK.md`` §1.2-1.4), for the fake Slack Web API.

``check_message_blocks`` and ``check_view`` return Slack-style error strings such as
``"must be less than 3001 characters [json-pointer:/blocks/0/text/text]"``; an empty list means Slack would accept
the payload (as far as these limits go). Written independently of slack_sdk's model validators on purpose: the
bot's builders use those, so re-using them here would let a shared mistake pass unnoticed.
"""

from __future__ import annotations

import re
from typing import Any

MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100
ID_MAX = 255                      # block_id, action_id, callback_id, external_id
TEXT_OBJECT_MAX = 3000
SECTION_TEXT_MAX = 3000
SECTION_FIELDS_MAX = 10
SECTION_FIELD_TEXT_MAX = 2000
HEADER_TEXT_MAX = 150
ACTIONS_ELEMENTS_MAX = 25
CONTEXT_ELEMENTS_MAX = 10
INPUT_LABEL_MAX = 2000
INPUT_HINT_MAX = 2000
MARKDOWN_BLOCK_MAX = 12000
BUTTON_TEXT_MAX = 75
BUTTON_VALUE_MAX = 2000
URL_MAX = 3000
ACCESSIBILITY_LABEL_MAX = 75
PLACEHOLDER_MAX = 150
PLAIN_TEXT_INPUT_MAX = 3000
SELECT_OPTIONS_MAX = 100
OVERFLOW_OPTIONS_MAX = 5
CHOICE_OPTIONS_MAX = 10           # checkboxes, radio_buttons
OPTION_TEXT_MAX = 75
OPTION_VALUE_MAX = 150
OPTION_DESCRIPTION_MAX = 75
OPTION_GROUP_LABEL_MAX = 75
CONFIRM_TITLE_MAX = 100
CONFIRM_TEXT_MAX = 300
CONFIRM_BUTTON_MAX = 30
IMAGE_ALT_TEXT_MAX = 2000
IMAGE_TITLE_MAX = 2000
VIEW_TITLE_MAX = 24
VIEW_BUTTON_MAX = 24              # submit, close
PRIVATE_METADATA_MAX = 3000
CHAT_UPDATE_TEXT_MAX = 4000       # chat.update answers msg_too_long beyond this
MESSAGE_TEXT_TRUNCATE = 40000     # longer text is truncated with warning message_truncated

BLOCK_TYPES = frozenset({"section", "header", "actions", "context", "divider", "input", "image", "markdown",
                         "rich_text", "file", "video"})
_SELECTS = frozenset({"users_select", "multi_users_select", "conversations_select", "multi_conversations_select",
                      "channels_select", "multi_channels_select", "external_select", "multi_external_select"})
_INPUTS = frozenset({"email_text_input", "url_text_input", "number_input", "rich_text_input", "file_input",
                     "datetimepicker"})
_ACCESSORY_TYPES = frozenset({"button", "overflow", "static_select", "multi_static_select", "checkboxes",
                              "radio_buttons", "datepicker", "timepicker", "image"} | _SELECTS)
_STYLES = frozenset({"primary", "danger"})


class _Checker:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, message: str, pointer: str) -> None:
        self.errors.append(f"{message} [json-pointer:{pointer}]")

    def length(self, value: Any, limit: int, pointer: str, *, minimum: int = 0) -> None:
        if not isinstance(value, str):
            self.fail("must be a string", pointer)
        elif len(value) > limit:
            self.fail(f"must be less than {limit + 1} characters", pointer)
        elif len(value) < minimum:
            self.fail(f"must be at least {minimum} characters", pointer)

    def count(self, items: Any, limit: int, pointer: str, *, minimum: int = 0) -> list[Any]:
        if not isinstance(items, list):
            self.fail("must be an array", pointer)
            return []
        if len(items) > limit:
            self.fail(f"must be less than {limit + 1} items", pointer)
        elif len(items) < minimum:
            self.fail(f"must provide at least {minimum} items", pointer)
        return items

    def text(self, obj: Any, limit: int, pointer: str, *, plain_only: bool = False) -> None:
        """A text object: ``{"type": "plain_text"|"mrkdwn", "text": ...}`` with 1..limit characters."""
        if not isinstance(obj, dict):
            self.fail("must be a text object", pointer)
            return
        kinds = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
        if obj.get("type") not in kinds:
            self.fail(f"must be one of {', '.join(kinds)}", pointer + "/type")
        self.length(obj.get("text"), limit, pointer + "/text", minimum=1)

    def optional_text(self, parent: dict[str, Any], key: str, limit: int, pointer: str, *,
                      plain_only: bool = True) -> None:
        if key in parent:
            self.text(parent[key], limit, f"{pointer}/{key}", plain_only=plain_only)

    def optional_length(self, parent: dict[str, Any], key: str, limit: int, pointer: str) -> None:
        if key in parent:
            self.length(parent[key], limit, f"{pointer}/{key}")

    # --- composition objects -------------------------------------------------------------------------

    def option(self, opt: Any, pointer: str, *, allow_url: bool = False, plain_only: bool = True) -> None:
        if not isinstance(opt, dict):
            self.fail("must be an option object", pointer)
            return
        self.text(opt.get("text"), OPTION_TEXT_MAX, pointer + "/text", plain_only=plain_only)
        self.length(opt.get("value"), OPTION_VALUE_MAX, pointer + "/value", minimum=1)
        self.optional_text(opt, "description", OPTION_DESCRIPTION_MAX, pointer, plain_only=plain_only)
        if "url" in opt:
            if allow_url:
                self.length(opt["url"], URL_MAX, pointer + "/url")
            else:
                self.fail("url is only allowed in overflow menu options", pointer + "/url")

    def confirm(self, obj: Any, pointer: str) -> None:
        if not isinstance(obj, dict):
            self.fail("must be a confirm object", pointer)
            return
        for key, limit in (("title", CONFIRM_TITLE_MAX), ("confirm", CONFIRM_BUTTON_MAX),
                           ("deny", CONFIRM_BUTTON_MAX)):
            self.text(obj.get(key), limit, f"{pointer}/{key}", plain_only=True)
        self.text(obj.get("text"), CONFIRM_TEXT_MAX, pointer + "/text")
        if "style" in obj and obj["style"] not in _STYLES:
            self.fail("must be primary or danger", pointer + "/style")

    # --- elements --------------------------------------------------------------------------------------

    def element(self, el: Any, pointer: str, *, allowed: frozenset[str] | None = None) -> None:
        if not isinstance(el, dict):
            self.fail("must be an element object", pointer)
            return
        kind = el.get("type")
        if allowed is not None and kind not in allowed:
            self.fail(f"element type {kind!r} is not allowed here", pointer + "/type")
            return
        if "action_id" in el:
            self.length(el["action_id"], ID_MAX, pointer + "/action_id", minimum=1)
        if "confirm" in el:
            self.confirm(el["confirm"], pointer + "/confirm")
        if "placeholder" in el:
            self.text(el["placeholder"], PLACEHOLDER_MAX, pointer + "/placeholder", plain_only=True)
        if kind == "button":
            self.text(el.get("text"), BUTTON_TEXT_MAX, pointer + "/text", plain_only=True)
            self.optional_length(el, "value", BUTTON_VALUE_MAX, pointer)
            self.optional_length(el, "url", URL_MAX, pointer)
            self.optional_length(el, "accessibility_label", ACCESSIBILITY_LABEL_MAX, pointer)
            if "style" in el and el["style"] not in _STYLES:
                self.fail("must be primary or danger", pointer + "/style")
        elif kind == "overflow":
            options = self.count(el.get("options"), OVERFLOW_OPTIONS_MAX, pointer + "/options", minimum=1)
            for i, opt in enumerate(options):
                self.option(opt, f"{pointer}/options/{i}", allow_url=True)
        elif kind in ("static_select", "multi_static_select"):
            self.static_select(el, pointer)
        elif kind in ("checkboxes", "radio_buttons"):
            options = self.count(el.get("options"), CHOICE_OPTIONS_MAX, pointer + "/options", minimum=1)
            for i, opt in enumerate(options):
                self.option(opt, f"{pointer}/options/{i}", plain_only=False)
        elif kind == "plain_text_input":
            self.optional_length(el, "initial_value", PLAIN_TEXT_INPUT_MAX, pointer)
            for key, low in (("min_length", 0), ("max_length", 1)):
                value = el.get(key)
                if value is not None and (not isinstance(value, int) or not low <= value <= PLAIN_TEXT_INPUT_MAX):
                    self.fail(f"must be between {low} and {PLAIN_TEXT_INPUT_MAX}", f"{pointer}/{key}")
        elif kind == "datepicker":
            if "initial_date" in el and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(el["initial_date"])):
                self.fail("must be YYYY-MM-DD", pointer + "/initial_date")
        elif kind == "timepicker":
            if "initial_time" in el and not re.fullmatch(r"\d{2}:\d{2}", str(el["initial_time"])):
                self.fail("must be HH:mm", pointer + "/initial_time")
        elif kind == "image":
            self.image(el, pointer)
        elif kind not in _SELECTS and kind not in _INPUTS:
            self.fail(f"unsupported element type {kind!r}", pointer + "/type")

    def static_select(self, el: dict[str, Any], pointer: str) -> None:
        has_options, has_groups = "options" in el, "option_groups" in el
        if has_options == has_groups:
            self.fail("must provide exactly one of options or option_groups", pointer)
        if has_options:
            options = self.count(el["options"], SELECT_OPTIONS_MAX, pointer + "/options", minimum=1)
            for i, opt in enumerate(options):
                self.option(opt, f"{pointer}/options/{i}")
        if has_groups:
            groups = self.count(el["option_groups"], SELECT_OPTIONS_MAX, pointer + "/option_groups", minimum=1)
            for g, group in enumerate(groups):
                gp = f"{pointer}/option_groups/{g}"
                if not isinstance(group, dict):
                    self.fail("must be an option group", gp)
                    continue
                self.text(group.get("label"), OPTION_GROUP_LABEL_MAX, gp + "/label", plain_only=True)
                options = self.count(group.get("options"), SELECT_OPTIONS_MAX, gp + "/options", minimum=1)
                for i, opt in enumerate(options):
                    self.option(opt, f"{gp}/options/{i}")

    def image(self, obj: dict[str, Any], pointer: str) -> None:
        if "image_url" in obj:
            self.length(obj["image_url"], URL_MAX, pointer + "/image_url", minimum=1)
        elif "slack_file" not in obj:
            self.fail("must provide image_url or slack_file", pointer)
        self.length(obj.get("alt_text"), IMAGE_ALT_TEXT_MAX, pointer + "/alt_text", minimum=1)

    # --- blocks --------------------------------------------------------------------------------------

    def blocks(self, blocks: Any, limit: int, pointer: str, *, surface: str) -> None:
        seen_block_ids: set[str] = set()
        for i, block in enumerate(self.count(blocks, limit, pointer)):
            bp = f"{pointer}/{i}"
            if not isinstance(block, dict):
                self.fail("must be a block object", bp)
                continue
            block_id = block.get("block_id")
            if block_id is not None:
                self.length(block_id, ID_MAX, bp + "/block_id", minimum=1)
                if block_id in seen_block_ids:
                    self.fail(f"duplicate block_id {block_id!r}", bp + "/block_id")
                seen_block_ids.add(block_id)
            self.block(block, bp, surface=surface)

    def block(self, block: dict[str, Any], bp: str, *, surface: str) -> None:
        kind = block.get("type")
        if kind not in BLOCK_TYPES:
            self.fail(f"unsupported block type {kind!r}", bp + "/type")
        elif kind == "section":
            if "text" not in block and "fields" not in block:
                self.fail("must provide text or fields", bp)
            if "text" in block:
                self.text(block["text"], SECTION_TEXT_MAX, bp + "/text")
            if "fields" in block:
                fields = self.count(block["fields"], SECTION_FIELDS_MAX, bp + "/fields", minimum=1)
                for i, field in enumerate(fields):
                    self.text(field, SECTION_FIELD_TEXT_MAX, f"{bp}/fields/{i}")
            if "accessory" in block:
                self.element(block["accessory"], bp + "/accessory", allowed=_ACCESSORY_TYPES)
        elif kind == "header":
            self.text(block.get("text"), HEADER_TEXT_MAX, bp + "/text", plain_only=True)
        elif kind == "actions":
            elements = self.count(block.get("elements"), ACTIONS_ELEMENTS_MAX, bp + "/elements", minimum=1)
            self.unique_action_ids(elements, bp)
            for i, el in enumerate(elements):
                self.element(el, f"{bp}/elements/{i}")
        elif kind == "context":
            elements = self.count(block.get("elements"), CONTEXT_ELEMENTS_MAX, bp + "/elements", minimum=1)
            for i, el in enumerate(elements):
                if isinstance(el, dict) and el.get("type") == "image":
                    self.image(el, f"{bp}/elements/{i}")
                else:
                    self.text(el, TEXT_OBJECT_MAX, f"{bp}/elements/{i}")
        elif kind == "input":
            self.text(block.get("label"), INPUT_LABEL_MAX, bp + "/label", plain_only=True)
            self.optional_text(block, "hint", INPUT_HINT_MAX, bp)
            if "element" not in block:
                self.fail("must provide element", bp)
            else:
                self.element(block["element"], bp + "/element")
        elif kind == "image":
            self.image(block, bp)
            self.optional_text(block, "title", IMAGE_TITLE_MAX, bp)
        elif kind == "markdown":
            if surface != "message":
                self.fail("markdown blocks are only allowed in messages", bp + "/type")
            self.length(block.get("text"), MARKDOWN_BLOCK_MAX, bp + "/text", minimum=1)

    def unique_action_ids(self, elements: list[Any], bp: str) -> None:
        seen: set[str] = set()
        for i, el in enumerate(elements):
            action_id = el.get("action_id") if isinstance(el, dict) else None
            if action_id is None:
                continue
            if action_id in seen:
                self.fail(f"duplicate action_id {action_id!r}", f"{bp}/elements/{i}/action_id")
            seen.add(action_id)


def check_message_blocks(blocks: Any, *, pointer: str = "/blocks") -> list[str]:
    """Errors for a message's ``blocks`` (chat.postMessage, chat.update, chat.postEphemeral, response_url)."""
    checker = _Checker()
    checker.blocks(blocks, MESSAGE_BLOCKS, pointer, surface="message")
    return checker.errors


def check_view(view: Any, *, pointer: str = "/view") -> list[str]:
    """Errors for a modal or Home tab view (views.open / push / update / publish)."""
    checker = _Checker()
    if not isinstance(view, dict):
        checker.fail("must be a view object", pointer)
        return checker.errors
    kind = view.get("type")
    if kind == "modal":
        checker.text(view.get("title"), VIEW_TITLE_MAX, pointer + "/title", plain_only=True)
        for key in ("submit", "close"):
            checker.optional_text(view, key, VIEW_BUTTON_MAX, pointer)
        blocks = view.get("blocks")
        has_input = isinstance(blocks, list) and any(
            isinstance(b, dict) and b.get("type") == "input" for b in blocks)
        if has_input and "submit" not in view:
            checker.fail("submit is required when a modal contains input blocks", pointer + "/submit")
    elif kind == "home":
        for key in ("submit", "close"):
            if key in view:
                checker.fail(f"{key} is not allowed in a home view", f"{pointer}/{key}")
    else:
        checker.fail("must be modal or home", pointer + "/type")
    checker.optional_length(view, "private_metadata", PRIVATE_METADATA_MAX, pointer)
    checker.optional_length(view, "callback_id", ID_MAX, pointer)
    checker.optional_length(view, "external_id", ID_MAX, pointer)
    checker.blocks(view.get("blocks"), VIEW_BLOCKS, pointer + "/blocks", surface=kind or "view")
    return checker.errors
