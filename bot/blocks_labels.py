"""The approval card's overflow menu: escalate, add the common labels, remove the request's own. Pure.

Slack allows five options per overflow menu and 150 characters per option value; a value is
``<op>|<label>|<request id>`` (at most 64 + 30 characters of label and id).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk.models.blocks import Option, OverflowMenuElement

from bot.blocks_text import truncate
from bot.ids import Action

COMMON_LABELS = ("needs-human-review", "escalation")
ESCALATE, ADD, REMOVE = "esc", "add", "rm"
MAX_OPTIONS = 5


@dataclass(frozen=True)
class LabelChoice:
    op: str  # ESCALATE, ADD or REMOVE
    label: str
    request_id: str


def _option(text: str, op: str, label: str, request_id: str) -> Option:
    return Option(text=truncate(text, 75), value=f"{op}|{label}|{request_id}")


def label_menu(
    req: Mapping[str, Any], *, common: Sequence[str] = COMMON_LABELS, escalation_label: str = "escalation"
) -> OverflowMenuElement:
    """Escalate (unless already labelled so), add each common label it lacks, remove the labels it has."""
    rid = str(req.get("id"))
    labels = [str(lb) for lb in req.get("labels") or []]
    options: list[Option] = []
    if escalation_label not in labels:
        options.append(_option(":rotating_light: Escalate", ESCALATE, escalation_label, rid))
    for label in common:
        if label not in labels and label != escalation_label:
            options.append(_option(f"Add label: {label}", ADD, label, rid))
    for label in labels:
        options.append(_option(f"Remove label: {label}", REMOVE, label, rid))
    return OverflowMenuElement(action_id=Action.OVERFLOW, options=options[:MAX_OPTIONS])


def parse_label_choice(value: str) -> LabelChoice | None:
    op, _, rest = value.partition("|")
    label, _, rid = rest.rpartition("|")
    if op not in (ESCALATE, ADD, REMOVE) or not label or not rid.startswith("req_"):
        return None
    return LabelChoice(op, label, rid)
