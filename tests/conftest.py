"""Shared fixtures: SQLite and a real PostgreSQL server, and a live signoff app on a loopback port."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import SignoffApp, Tuning
from bot.config import Config
from bot.settings import Settings
from tests.support.pg import create_database, postgres_server

_db_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    external = os.environ.get("SIGNOFF_TEST_PG_URL")
    if external:
        yield external
        return
    with postgres_server() as url:
        yield url


@pytest.fixture
def pg_url(pg_server_url: str) -> str:
    """An empty database on the session's PostgreSQL server."""
    return create_database(pg_server_url, f"t{os.getpid()}_{next(_db_counter)}")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'signoff.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Runs the test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


def make_settings(db_url: str, **overrides: Any) -> Settings:
    return Settings(database_url=db_url, host="127.0.0.1", port=0, **overrides)


@dataclass
class Live:
    """A running app plus ready-made tokens and an HTTP session."""

    app: SignoffApp
    http: aiohttp.ClientSession
    agent_token: str
    reviewer_token: str
    admin_token: str

    @property
    def url(self) -> str:
        return self.app.url

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.agent_token}"}

    async def call(self, method: str, path: str, *, token: str | None = None, json: Any = None,
                   **kw: Any) -> tuple[int, Any]:
        async with self.http.request(method, self.url + path, headers=self.auth(token), json=json, **kw) as r:
            ctype = r.headers.get("content-type", "")
            body = await r.json() if "json" in ctype else await r.text()
            return r.status, body

    async def submit(self, body: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        payload = body or {"action": {"tool": "send_email", "args": {"to": "a@example.com"}}, **fields}
        status, out = await self.call("POST", "/v1/requests", json=payload)
        assert status == 201, out
        return dict(out)


async def start_live(db_url: str, *, config: Config | None = None, tuning: Tuning | None = None,
                     token_names: tuple[str, str, str] = ("agent-1", "dana", "root"), **settings: Any) -> Live:
    """Start an app on ``db_url`` with an agent, a reviewer and an admin token (pass other ``token_names``
    when restarting on a database that already has these)."""
    app = SignoffApp(make_settings(db_url, **settings), config=config, tuning=tuning)
    await app.start()
    tokens = [await app.tokens.create(name=n, role=r)
              for n, r in zip(token_names, ("agent", "reviewer", "admin"), strict=True)]
    return Live(app, aiohttp.ClientSession(), *tokens)


@pytest.fixture
async def live(db_url: str) -> AsyncIterator[Live]:
    lv = await start_live(db_url)
    try:
        yield lv
    finally:
        await lv.http.close()
        await lv.app.stop()


@pytest.fixture
async def live_sqlite(sqlite_url: str) -> AsyncIterator[Live]:
    lv = await start_live(sqlite_url)
    try:
        yield lv
    finally:
        await lv.http.close()
        await lv.app.stop()
