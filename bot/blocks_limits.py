"""Block Kit limits (SLACK.md §1.2 to 1.4) checked over the JSON Slack would receive.

slack_sdk validates some limits in ``to_dict()``, but not per-field lengths, option values in dicts or the
blocks-per-message count. These checks walk the final JSON instead, so they apply equally to our own
builders and to whatever a fake Slack Web API receives in tests. A breach raises ``BlockKitLimitError``
naming the JSON pointer of the offending value, the way Slack's ``invalid_blocks`` error does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bot.blocks_text import slack_len

MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100
MESSAGE_TEXT = 4000
TEXT_OBJECT = 3000
SECTION_TEXT = 3000
SECTION_FIELDS = 10
SECTION_FIELD = 2000
HEADER_TEXT = 150
BUTTON_TEXT = 75
BUTTON_VALUE = 2000
URL = 3000
ID = 255
OPTION_TEXT = 75
OPTION_VALUE = 150
CONTEXT_ELEMENTS = 10
ACTIONS_ELEMENTS = 25
VIEW_TITLE = 24
PRIVATE_METADATA = 3000
INPUT_LABEL = 2000
INPUT_VALUE = 3000
PLACEHOLDER = 150
SELECT_OPTIONS = 100
CHOICE_OPTIONS = 10
OVERFLOW_OPTIONS = 5


class BlockKitLimitError(ValueError):
    """A Block Kit payload breaks one of Slack's limits; ``path`` is a JSON pointer to the value."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{message} [json-pointer:{path}]")
        self.path = path


def check_message_limits(message: Mapping[str, Any]) -> None:
    """Raise ``BlockKitLimitError`` when a chat.postMessage / chat.update body breaks a Block Kit limit.

    ``blocks`` may be a list or, as in a form-encoded Web API call, a JSON string.
    """
    text = message.get("text")
    if text is not None:
        _max_len(text, MESSAGE_TEXT, "/text")
    blocks = _decoded(message.get("blocks"), "/blocks")
    if blocks is not None:
        _check_blocks(blocks, "/blocks", MESSAGE_BLOCKS)


def check_view_limits(view: Mapping[str, Any] | str) -> None:
    """Raise ``BlockKitLimitError`` when a modal or App Home view breaks a Block Kit or view limit."""
    data = _decoded(view, "")
    if not isinstance(data, Mapping):
        raise BlockKitLimitError("", "a view must be an object")
    kind = data.get("type")
    if kind not in ("modal", "home"):
        raise BlockKitLimitError("/type", "a view's type must be modal or home")
    if kind == "modal" and data.get("title") is None:
        raise BlockKitLimitError("/title", "a modal needs a title")
    for key in ("title", "submit", "close"):
        if data.get(key) is not None:
            _text(data[key], f"/{key}", VIEW_TITLE, plain=True)
    for key, limit in (("private_metadata", PRIVATE_METADATA), ("callback_id", ID), ("external_id", ID)):
        if data.get(key) is not None:
            _max_len(data[key], limit, f"/{key}")
    blocks = data.get("blocks")
    if not isinstance(blocks, list):
        raise BlockKitLimitError("/blocks", "a view needs a list of blocks")
    _check_blocks(blocks, "/blocks", VIEW_BLOCKS)


def _decoded(value: Any, path: str) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as e:
            raise BlockKitLimitError(path, f"not valid JSON: {e}") from None
    return value


def _max_len(value: Any, limit: int, path: str, *, minimum: int = 0) -> None:
    if not isinstance(value, str):
        raise BlockKitLimitError(path, "must be a string")
    n = slack_len(value)
    if n > limit:
        raise BlockKitLimitError(path, f"must be at most {limit} characters, is {n}")
    if n < minimum:
        raise BlockKitLimitError(path, f"must be at least {minimum} characters")


def _obj(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise BlockKitLimitError(path, "must be an object")
    return value


def _text(value: Any, path: str, limit: int = TEXT_OBJECT, *, plain: bool = False) -> None:
    obj = _obj(value, path)
    kind = obj.get("type")
    if kind not in ("plain_text", "mrkdwn") or (plain and kind != "plain_text"):
        raise BlockKitLimitError(f"{path}/type", "must be plain_text" if plain else "must be a text object")
    _max_len(obj.get("text"), min(limit, TEXT_OBJECT), f"{path}/text", minimum=1)


def _check_blocks(blocks: Any, path: str, max_blocks: int) -> None:
    if not isinstance(blocks, list):
        raise BlockKitLimitError(path, "blocks must be a list")
    if len(blocks) > max_blocks:
        raise BlockKitLimitError(path, f"no more than {max_blocks} blocks allowed, found {len(blocks)}")
    seen: set[str] = set()
    for i, block in enumerate(blocks):
        bpath = f"{path}/{i}"
        b = _obj(block, bpath)
        block_id = b.get("block_id")
        if block_id is not None:
            _max_len(block_id, ID, f"{bpath}/block_id", minimum=1)
            if block_id in seen:
                raise BlockKitLimitError(f"{bpath}/block_id", f"duplicate block_id {block_id!r}")
            seen.add(block_id)
        _check_block(b, bpath)


def _check_block(b: Mapping[str, Any], path: str) -> None:
    kind = b.get("type")
    if kind == "section":
        if b.get("text") is None and b.get("fields") is None:
            raise BlockKitLimitError(path, "a section needs text or fields")
        if b.get("text") is not None:
            _text(b["text"], f"{path}/text", SECTION_TEXT)
        fields = b.get("fields")
        if fields is not None:
            if not isinstance(fields, list) or not 1 <= len(fields) <= SECTION_FIELDS:
                raise BlockKitLimitError(f"{path}/fields", f"fields must hold 1 to {SECTION_FIELDS} items")
            for j, field in enumerate(fields):
                _text(field, f"{path}/fields/{j}", SECTION_FIELD)
        if b.get("accessory") is not None:
            _check_element(b["accessory"], f"{path}/accessory")
    elif kind == "header":
        _text(b.get("text"), f"{path}/text", HEADER_TEXT, plain=True)
    elif kind == "context":
        _check_list(b.get("elements"), f"{path}/elements", CONTEXT_ELEMENTS)
        for j, el in enumerate(b["elements"]):
            epath = f"{path}/elements/{j}"
            if _obj(el, epath).get("type") == "image":
                _check_element(el, epath)
            else:
                _text(el, epath)
    elif kind == "actions":
        _check_list(b.get("elements"), f"{path}/elements", ACTIONS_ELEMENTS)
        action_ids: set[str] = set()
        for j, el in enumerate(b["elements"]):
            _check_element(el, f"{path}/elements/{j}")
            action_id = el.get("action_id")
            if action_id is not None:
                if action_id in action_ids:
                    raise BlockKitLimitError(f"{path}/elements/{j}/action_id", "duplicate action_id in block")
                action_ids.add(action_id)
    elif kind == "input":
        _text(b.get("label"), f"{path}/label", INPUT_LABEL, plain=True)
        if b.get("hint") is not None:
            _text(b["hint"], f"{path}/hint", INPUT_LABEL, plain=True)
        _check_element(b.get("element"), f"{path}/element")
    elif kind == "markdown":
        _max_len(b.get("text"), 12000, f"{path}/text", minimum=1)
    elif kind == "image":
        _check_element(b, path)


def _check_list(value: Any, path: str, limit: int) -> None:
    if not isinstance(value, list) or not 1 <= len(value) <= limit:
        raise BlockKitLimitError(path, f"must hold 1 to {limit} elements")


def _check_element(value: Any, path: str) -> None:
    el = _obj(value, path)
    kind = el.get("type")
    if el.get("action_id") is not None:
        _max_len(el["action_id"], ID, f"{path}/action_id", minimum=1)
    if el.get("placeholder") is not None:
        _text(el["placeholder"], f"{path}/placeholder", PLACEHOLDER, plain=True)
    if el.get("confirm") is not None:
        _check_confirm(el["confirm"], f"{path}/confirm")
    if kind == "button":
        _text(el.get("text"), f"{path}/text", BUTTON_TEXT, plain=True)
        if el.get("value") is not None:
            _max_len(el["value"], BUTTON_VALUE, f"{path}/value")
        if el.get("url") is not None:
            _max_len(el["url"], URL, f"{path}/url")
        if el.get("accessibility_label") is not None:
            _max_len(el["accessibility_label"], BUTTON_TEXT, f"{path}/accessibility_label")
        if el.get("style") not in (None, "primary", "danger"):
            raise BlockKitLimitError(f"{path}/style", "style must be primary or danger")
    elif kind in ("plain_text_input", "number_input", "email_text_input", "url_text_input"):
        if el.get("initial_value") is not None:
            _max_len(str(el["initial_value"]), INPUT_VALUE, f"{path}/initial_value")
        for key, low in (("min_length", 0), ("max_length", 1)):
            n = el.get(key)
            if n is not None and not (isinstance(n, int) and low <= n <= INPUT_VALUE):
                raise BlockKitLimitError(f"{path}/{key}", f"must be between {low} and {INPUT_VALUE}")
    elif kind == "image":
        _max_len(el.get("image_url", ""), URL, f"{path}/image_url")
        _max_len(el.get("alt_text"), 2000, f"{path}/alt_text", minimum=1)
        if el.get("title") is not None:
            _text(el["title"], f"{path}/title", 2000, plain=True)
    limit = {"overflow": OVERFLOW_OPTIONS, "radio_buttons": CHOICE_OPTIONS, "checkboxes": CHOICE_OPTIONS}
    if "options" in el:
        _check_list(el["options"], f"{path}/options", limit.get(str(kind), SELECT_OPTIONS))
        for j, option in enumerate(el["options"]):
            _check_option(option, f"{path}/options/{j}")
    if "option_groups" in el:
        _check_list(el["option_groups"], f"{path}/option_groups", SELECT_OPTIONS)
        for j, group in enumerate(el["option_groups"]):
            gpath = f"{path}/option_groups/{j}"
            _text(_obj(group, gpath).get("label"), f"{gpath}/label", OPTION_TEXT, plain=True)
            _check_list(group.get("options"), f"{gpath}/options", SELECT_OPTIONS)
            for k, option in enumerate(group["options"]):
                _check_option(option, f"{gpath}/options/{k}")
    if el.get("initial_option") is not None:
        _check_option(el["initial_option"], f"{path}/initial_option")
    for j, option in enumerate(el.get("initial_options") or []):
        _check_option(option, f"{path}/initial_options/{j}")


def _check_option(value: Any, path: str) -> None:
    option = _obj(value, path)
    _text(option.get("text"), f"{path}/text", OPTION_TEXT)
    _max_len(option.get("value"), OPTION_VALUE, f"{path}/value")
    if option.get("description") is not None:
        _text(option["description"], f"{path}/description", OPTION_TEXT)
    if option.get("url") is not None:
        _max_len(option["url"], URL, f"{path}/url")


def _check_confirm(value: Any, path: str) -> None:
    confirm = _obj(value, path)
    _text(confirm.get("title"), f"{path}/title", 100, plain=True)
    _text(confirm.get("text"), f"{path}/text", 300)
    for key in ("confirm", "deny"):
        if confirm.get(key) is not None:
            _text(confirm[key], f"{path}/{key}", 30, plain=True)
    if confirm.get("style") not in (None, "primary", "danger"):
        raise BlockKitLimitError(f"{path}/style", "style must be primary or danger")
