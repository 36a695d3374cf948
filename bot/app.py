"""The composition root: builds every part, wires them together, and owns start-up and shut-down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from bot.api import MAX_BODY, Api, ApiDeps, error_response, make_error_middleware
from bot.batches import BatchService
from bot.clock import Clock, SystemClock
from bot.config import Config, load_config
from bot.effects import Effects, WebhookEffects
from bot.errors import Unavailable
from bot.grants import Grants
from bot.jobs import build_scheduler
from bot.metrics import Metrics
from bot.outbox import OutboxWorker
from bot.parking import ParkedWaits
from bot.schedule_service import ScheduleService
from bot.service import ApprovalService, ServiceHooks
from bot.settings import Settings
from bot.tokens import Tokens
from bot.waiters import FallbackReread, PgListener, Waiters
from bot.webhooks import WebhookSender, new_secret
from storage import repository as repo
from storage.db import Database
from storage.migrate import upgrade

log = logging.getLogger("signoff")


@dataclass
class Tuning:
    """Knobs tests and benchmarks turn; production uses the defaults."""

    expire_every_s: float = 1.0
    reread_every_s: float | None = None  # default: 1 s on SQLite, 2 s on PostgreSQL (LISTEN does the work)
    outbox_poll_s: float = 1.0
    outbox_max_attempts: int = 12
    outbox_base_delay_s: float = 1.0
    stop_grace_s: float = 5.0
    run_scheduler: bool = True
    nudge_every_s: float = 2.0  # reminder and escalation sweeps


def build_core(settings: Settings, *, config: Config | None = None,
               clock: Clock | None = None) -> tuple[Database, ApprovalService, Tokens, Metrics]:
    """The database-backed core without any server: what the CLI and the app share."""
    config = config if config is not None else load_config(settings.config_path)
    clock = clock or SystemClock()
    db = Database(settings.database_url)
    metrics = Metrics()
    hooks = ServiceHooks(on_submitted=[metrics.on_submitted], on_terminal=[metrics.on_terminal])
    effects: list[Effects] = [WebhookEffects()]
    if settings.slack_enabled:
        from bot.home import HomeEffects
        from bot.slack_delivery import SlackEffects

        effects.append(SlackEffects())
        effects.append(HomeEffects())  # App Home published again after a reviewer's decision from Slack
    grants = Grants(db=db, clock=clock)
    service = ApprovalService(
        db=db, clock=clock, config=config, effects=effects, grants=grants,
        waiters=Waiters(), default_channel=settings.default_channel, mode=settings.mode, hooks=hooks,
    )
    return db, service, Tokens(db=db, clock=clock), metrics


def build_schedule(settings: Settings, service: ApprovalService) -> ScheduleService:
    """The scheduler's use cases (expiry, reminders, escalations, digests) over the core's service."""
    return ScheduleService(service=service, slack_enabled=settings.slack_enabled)


async def deliver_slack_messages(settings: Settings, service: ApprovalService) -> int:
    """Deliver the due ``slack.message`` rows now, from a process without the server (``signoff digest run``)."""
    from bot.slack import web_client
    from bot.slack_delivery import MESSAGE, SlackDelivery

    client = web_client(settings, for_delivery=True)
    worker = OutboxWorker(db=service.db, clock=service.clock, wakeup=service.outbox_wakeup)
    worker.register(MESSAGE, SlackDelivery(client=client, service=service, clock=service.clock).message)
    delivered = 0
    for _ in range(20):
        claimed = await worker.run_once()
        if claimed == 0:
            break
        delivered += claimed
    return delivered


class SignoffApp:
    """``async with SignoffApp(settings) as app:`` serves the API until the block ends."""

    def __init__(self, settings: Settings, *, config: Config | None = None, clock: Clock | None = None,
                 tuning: Tuning | None = None) -> None:
        self.settings = settings
        self.tuning = tuning or Tuning()
        self.clock = clock or SystemClock()
        self.db, self.service, self.tokens, self.metrics = build_core(
            settings, config=config, clock=self.clock)
        self.schedule = build_schedule(settings, self.service)
        self.batches = BatchService(service=self.service, slack_enabled=settings.slack_enabled)
        self.outbox = OutboxWorker(
            db=self.db, clock=self.clock, wakeup=self.service.outbox_wakeup,
            max_attempts=self.tuning.outbox_max_attempts, base_delay_s=self.tuning.outbox_base_delay_s,
            idle_poll_s=self.tuning.outbox_poll_s,
        )
        self.web = web.Application(client_max_size=MAX_BODY, middlewares=[make_error_middleware(self.metrics)])
        self.parking = ParkedWaits(self.service)
        deps = ApiDeps(service=self.service, tokens=self.tokens, metrics=self.metrics,
                       ready=self.db.ping, counts=self._counts, batches=self.batches, parking=self.parking)
        self.web.add_routes(Api(deps).routes())
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._http: aiohttp.ClientSession | None = None
        self._scheduler: Any = None
        self._socket_mode: Any = None
        self.slack: Any = None
        self.port: int | None = None
        if settings.slack_enabled:
            self._build_slack()

    def _build_slack(self) -> None:
        from bot.batch_review import BatchReview
        from bot.batches import BATCH_POST
        from bot.card_labels import CardLabels
        from bot.coalesce import CardDelivery
        from bot.directory import SlackDirectory
        from bot.home import HOME, HomeDelivery
        from bot.inbox import Inbox
        from bot.review import SlackReview
        from bot.slack import build_slack, events_route, web_client
        from bot.slack_delivery import MESSAGE, POST, UPDATE, SlackDelivery
        from bot.surfaces import ReviewSurfaces

        client = web_client(self.settings, for_delivery=False)
        delivery_client = web_client(self.settings, for_delivery=True)
        directory = SlackDirectory(client)
        review = SlackReview(service=self.service, directory=directory)
        inbox = Inbox(service=self.service, directory=directory)
        surfaces = ReviewSurfaces(inbox=inbox, batch_review=BatchReview(review=review, batches=self.batches),
                                  labels=CardLabels(review=review, config=self.service.config))
        self.slack = build_slack(self.settings, review=review, directory=directory, client=client,
                                 delivery_client=delivery_client, surfaces=surfaces)
        delivery = SlackDelivery(client=delivery_client, service=self.service, clock=self.clock)
        # Cards go through CardDelivery: single cards by SlackDelivery, bursts to one channel as batch cards.
        cards = CardDelivery(delivery=delivery, batches=self.batches, config=self.service.config.slack,
                             clock=self.clock)
        self.outbox.register(POST, cards.post)
        self.outbox.register(UPDATE, cards.update)
        self.outbox.register(BATCH_POST, cards.batch_post)
        self.outbox.register(HOME, HomeDelivery(client=delivery_client, inbox=inbox).publish)
        self.outbox.register(MESSAGE, delivery.message)
        if not self.settings.socket_mode:
            self.web.add_routes([events_route(self.slack.app)])

    async def _counts(self) -> tuple[dict[str, int], int]:
        async with self.db.read() as s:
            return await repo.count_by_status(s, now=self.clock.now()), await repo.outbox_backlog(s)

    async def _webhook_secret(self) -> str:
        if self.settings.webhook_secret:
            return self.settings.webhook_secret.reveal()
        async with self.db.write() as s:
            return await repo.kv_set_if_absent(s, key="webhook_secret", value=new_secret())

    async def start(self) -> None:
        revision = await upgrade(self.db)
        log.info("database %s at schema revision %s", self.db.dialect, revision)
        self._http = aiohttp.ClientSession()
        self.outbox.register(WebhookEffects.KIND, WebhookSender(
            secret=await self._webhook_secret(), clock=self.clock, session=self._http))
        self._spawn(self.outbox.run(), "outbox")
        if self.service.grants is not None:
            await self.service.grants.refresh()
            self._spawn(self.service.grants.run(), "grants")
        reread_s = self.tuning.reread_every_s or (1.0 if self.db.is_sqlite else 2.0)
        self._spawn(FallbackReread(self.service.waiters, self.service.recently_decided, self.clock.now,
                                   reread_s).run(), "reread")
        if self.db.is_postgres:
            dsn = self.db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._spawn(PgListener(dsn, self.service.waiters).run(), "listen")
        if self.tuning.run_scheduler:
            # After downtime, everything overdue is expired (or escalated) before the first request is answered.
            await self.schedule.startup_sweep()
            self._scheduler = build_scheduler(schedule=self.schedule, expire_every_s=self.tuning.expire_every_s,
                                              nudge_every_s=self.tuning.nudge_every_s)
            self._scheduler.start()
        if self.slack is not None and self.settings.socket_mode:
            from bot.slack import start_socket_mode

            self._socket_mode = await start_socket_mode(self.slack.app, self.settings)
            log.info("Slack connected in Socket Mode")
        elif self.slack is not None:
            log.info("Slack events, interactivity and /signoff served at POST /slack/events")
        if self.slack is not None and not self.service.config.reviewers:
            log.warning("no reviewers in the config: requests without reviewers of their own (or of their route) "
                        "may be decided by anyone who can see their card")
        if not self.settings.slack_enabled:
            log.info("Slack is not configured (SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET unset): "
                     "review through the CLI (`signoff approvals ...`) and the HTTP API")
        # Parked /wait calls must not hold a shutdown for aiohttp's default minute, and a handler whose client
        # went away is cancelled at once instead of staying parked until its own timeout.
        self._runner = web.AppRunner(self.web, access_log=None, handle_signals=False, shutdown_timeout=3.0,
                                     handler_cancellation=True)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.settings.host, self.settings.port, backlog=1024,
                                 reuse_port=self.settings.reuse_port or None)
        await self._site.start()
        server = self._site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.settings.port
        log.info("signoff listening on http://%s:%s", self.settings.host, self.port)

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=f"signoff.{name}"))

    async def stop(self) -> None:
        if self._socket_mode is not None:
            with contextlib.suppress(Exception):
                await self._socket_mode.close_async()
        if self._site is not None:
            await self._site.stop()  # no new connections while the parked waits are answered
        await self.parking.close(error_response(
            Unavailable("signoff is stopping; call /wait again in a moment"), {"Retry-After": "1"}))
        if self._runner is not None:
            await self._runner.cleanup()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        self.outbox.request_stop()
        outbox = [t for t in self._tasks if t.get_name() == "signoff.outbox"]
        if outbox:  # let deliveries in flight finish (bounded) rather than cut them off mid-write
            await asyncio.wait(outbox, timeout=self.tuning.stop_grace_s)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        if self._http is not None:
            await self._http.close()
        await self.db.close()

    async def __aenter__(self) -> SignoffApp:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"
