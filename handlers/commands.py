"""``/signoff``: pending (drafts), mine, show, stats, help; Next / Previous on its pages; Show on a list item.

Every reply is ephemeral and goes through the command's ``response_url`` (``respond``): the command is acked
first, so Slack's 3 seconds never depend on the database. Page buttons replace the reply they are on. A bad
command is answered here rather than raised: Bolt forgets an ack when a listener fails within milliseconds
of acking, and a parse error is that fast.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot import blocks_grants, blocks_lists, commands
from bot.commands import Command
from bot.errors import SignoffError
from bot.ids import SLASH_COMMAND, Action
from bot.inbox import Inbox
from bot.listing import Result
from bot.review import SlackReview
from handlers.common import clicker


async def _answer(respond: Any, result: Awaitable[Result], *, replace: bool = False) -> None:
    try:
        message = blocks_lists.reply(await result)
    except SignoffError as e:
        await respond(response_type="ephemeral", replace_original=False, **blocks_lists.error_reply(e.message))
        return
    if replace:
        await respond(replace_original=True, **message)
    else:
        await respond(response_type="ephemeral", replace_original=False, **message)


def register(app: AsyncApp, inbox: Inbox, review: SlackReview | None = None) -> None:
    @app.command(SLASH_COMMAND)
    async def signoff(ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        if review is not None and (body.get("text") or "").split()[:1] == ["grants"]:
            await respond(response_type="ephemeral", replace_original=False,
                          **blocks_grants.grants_list(await review.list_grants()))
            return

        async def run() -> Result:
            return await inbox.run(commands.parse(body.get("text") or ""), clicker(body))

        await _answer(respond, run())

    async def page(ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Any) -> None:
        await ack()

        async def run() -> Result:
            return await inbox.page(commands.decode_page(action["value"]), clicker(body))

        await _answer(respond, run(), replace=True)

    app.action(Action.PAGE_NEXT)(page)
    app.action(Action.PAGE_PREV)(page)

    @app.action(Action.SHOW)
    async def show(ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Any) -> None:
        await ack()
        await _answer(respond, inbox.run(Command("show", request_id=action["value"]), clicker(body)))
