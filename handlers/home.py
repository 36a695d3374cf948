"""App Home: published when a user opens the Home tab (and, through the outbox, after their decisions)."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.blocks_home import home_view
from bot.inbox import Inbox


def register(app: AsyncApp, inbox: Inbox) -> None:
    @app.event("app_home_opened")
    async def home_opened(event: dict[str, Any], client: Any) -> None:
        if event.get("tab", "home") != "home":
            return  # the Messages tab
        user = str(event["user"])
        await client.views_publish(user_id=user, view=home_view(await inbox.home(user)))
