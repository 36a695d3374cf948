"""Small pieces every Slack surface uses: who clicked, and the one global error handler."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bot.errors import SignoffError
from bot.review import Clicker, SlackReview

log = logging.getLogger("signoff.handlers")


def clicker(body: dict[str, Any]) -> Clicker:
    user = body.get("user") or {}
    team = (body.get("team") or {}).get("id") or user.get("team_id")
    return Clicker(user_id=user.get("id") or body.get("user_id", ""), team_id=team,
                   username=user.get("username") or user.get("name") or body.get("user_name"))


def answers_errors(listener: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Answer a listener's failure from inside the listener.

    Bolt (1.30, async, ``process_before_response=False``) drops the HTTP ack when a listener raises within
    about 10 ms of acking, and Slack then sees a 404; so a listener that acks first must not raise. Bolt reads
    the arguments to inject from the wrapped function, so the listener still asks for what it needs (ask for
    ``respond`` and ``client`` so the error can be shown)."""

    @functools.wraps(listener)
    async def run(**kwargs: Any) -> None:
        try:
            await listener(**kwargs)
        except Exception as e:
            await on_error(e, kwargs.get("body") or {}, kwargs.get("respond"), kwargs.get("client"))

    return run


def modal_opener(review: SlackReview, kind: str,
                 build: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[..., Awaitable[None]]:
    """A button that opens a modal on its request (Edit, Reject, Approve + allow): ack, check the clicker may
    decide, open the view while the trigger is fresh."""

    @answers_errors
    async def open_modal(ack: Any, body: dict[str, Any], action: dict[str, Any], client: Any, respond: Any) -> None:
        await ack()
        req = await review.open_for(action["value"], clicker(body), kind=kind)
        await client.views_open(trigger_id=body["trigger_id"], view=build(req))

    return open_modal


async def on_error(error: Exception, body: dict[str, Any], respond: Any = None, client: Any = None) -> None:
    """Typed errors become an ephemeral message to the person who acted; anything else is logged."""
    if isinstance(error, SignoffError):
        text = error.message
    else:
        log.error("Slack listener failed", exc_info=error)
        text = "Something went wrong on signoff's side; please try again. If it keeps failing, tell an admin."
    who = clicker(body)
    if respond is not None and body.get("response_url"):
        await respond(text=text, response_type="ephemeral", replace_original=False)
        return
    channel = (body.get("channel") or {}).get("id") or body.get("channel_id")
    if client is not None and channel and who.user_id:
        await client.chat_postEphemeral(channel=channel, user=who.user_id, text=text)
