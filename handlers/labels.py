"""The card's overflow menu: Escalate, add a common label, remove one of the request's labels."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.blocks_labels import parse_label_choice
from bot.card_labels import CardLabels
from bot.errors import SignoffError, ValidationFailed
from bot.ids import Action
from handlers.common import clicker


def register(app: AsyncApp, labels: CardLabels) -> None:
    @app.action(Action.OVERFLOW)
    async def overflow(ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Any) -> None:
        await ack()
        choice = parse_label_choice(str((action.get("selected_option") or {}).get("value") or ""))
        try:
            if choice is None:
                raise ValidationFailed("That menu entry is not one signoff knows; the card may be out of date.")
            text = await labels.apply(choice, clicker(body))
        except SignoffError as e:  # answered here: Bolt may lose the ack of a listener that fails at once
            text = e.message
        await respond(text=text, response_type="ephemeral", replace_original=False)
