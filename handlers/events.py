"""Events that keep the directory caches honest."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.directory import SlackDirectory


def register(app: AsyncApp, directory: SlackDirectory) -> None:
    @app.event("subteam_members_changed")
    async def members_changed(event: dict[str, Any]) -> None:
        directory.forget_group(event.get("subteam_id", ""))

    @app.event("subteam_updated")
    async def group_updated(event: dict[str, Any]) -> None:
        directory.forget_group((event.get("subteam") or {}).get("id", ""))

    @app.event("user_change")
    async def user_changed(event: dict[str, Any]) -> None:
        directory.forget_person((event.get("user") or {}).get("id", ""))
