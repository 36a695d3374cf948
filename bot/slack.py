"""Slack wiring: the Bolt app, its Web API clients, and the ``/slack/events`` route on our aiohttp server."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.directory import SlackDirectory
from bot.review import SlackReview
from bot.settings import Settings
from bot.surfaces import ReviewSurfaces
from handlers import actions, events, grants, views
from handlers.common import on_error

log = logging.getLogger("signoff.slack")

EVENTS_PATH = "/slack/events"


def _base_url(settings: Settings) -> str:
    url = settings.slack_api_url or "https://slack.com/api/"
    return url if url.endswith("/") else url + "/"


def web_client(settings: Settings, *, for_delivery: bool) -> AsyncWebClient:
    """Interactive calls retry connection errors only (a trigger_id lives 3 s, so no sleeping on 429);
    background delivery also retries 5xx, and leaves 429 to the outbox, which honours ``Retry-After``."""
    assert settings.slack_bot_token is not None
    handlers: list[Any] = [AsyncConnectionErrorRetryHandler(max_retry_count=2)]
    if for_delivery:
        handlers.append(AsyncServerErrorRetryHandler(max_retry_count=2))
    return AsyncWebClient(token=settings.slack_bot_token.reveal(), base_url=_base_url(settings),
                          retry_handlers=handlers, timeout=10)


@dataclass
class SlackParts:
    app: AsyncApp
    directory: SlackDirectory
    review: SlackReview
    delivery_client: AsyncWebClient


def build_slack(settings: Settings, *, review: SlackReview, directory: SlackDirectory,
                client: AsyncWebClient, delivery_client: AsyncWebClient,
                surfaces: ReviewSurfaces | None = None) -> SlackParts:
    app = AsyncApp(
        client=client,
        signing_secret=settings.slack_signing_secret.reveal() if settings.slack_signing_secret else None,
        process_before_response=False,
        request_verification_enabled=not settings.socket_mode,
    )
    app.error(on_error)
    actions.register(app, review)
    views.register(app, review)
    events.register(app, directory)
    grants.register(app, review)
    if surfaces is not None:  # /signoff, App Home, batch cards, the card's label menu
        surfaces.register(app, review)
    return SlackParts(app=app, directory=directory, review=review, delivery_client=delivery_client)


def events_route(app: AsyncApp) -> web.RouteDef:
    async def handle(request: web.Request) -> web.Response:
        bolt_resp = await app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_resp)

    return web.post(EVENTS_PATH, handle)


async def start_socket_mode(app: AsyncApp, settings: Settings) -> Any:
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

    assert settings.slack_app_token is not None
    handler = AsyncSocketModeHandler(app, app_token=settings.slack_app_token.reveal())
    await handler.connect_async()
    return handler
