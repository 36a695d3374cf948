"""Crash safety (§6.1): SIGKILL ``signoff serve`` under load; every request answered 201 survives."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import build_core
from storage.migrate import upgrade
from tests.conftest import make_settings
from tests.support.pgtemplate import migrated_database
from tests.support.proc import Server, cli_env

CLIENTS = 6
ENOUGH = 120  # accepted submissions before the kill


@pytest.fixture
def pg_url(pg_server_url: str) -> str:
    """Overrides conftest's: a database already at the newest schema (a copy is faster than migrating)."""
    return migrated_database(pg_server_url)


async def _load_then_kill(server: Server, token: str) -> tuple[dict[str, dict[str, Any]], int]:
    """Clients submit as fast as they can; the server is killed once enough were accepted.
    Returns the accepted requests by id and how many submissions were cut off without an answer."""
    accepted: dict[str, dict[str, Any]] = {}
    cut_off = 0
    enough, killed = asyncio.Event(), asyncio.Event()
    headers = {"Authorization": f"Bearer {token}"}

    async def client(n: int, http: aiohttp.ClientSession) -> None:
        nonlocal cut_off
        i = 0
        while not killed.is_set():
            body = {"action": {"tool": "send_email", "args": {"client": n, "i": i}},
                    "idempotency_key": f"c{n}-{i}"}
            i += 1
            try:
                async with http.post(server.url + "/v1/requests", json=body, headers=headers) as r:
                    if r.status == 201:
                        out = await r.json()
                        accepted[out["id"]] = body
                        if len(accepted) >= ENOUGH:
                            enough.set()
                    else:
                        raise AssertionError(f"HTTP {r.status}: {await r.text()}")
            except (TimeoutError, aiohttp.ClientError):
                cut_off += 1
                return

    async def killer() -> None:
        await enough.wait()
        await asyncio.to_thread(server.kill)  # SIGKILL while requests are in flight
        killed.set()

    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        await asyncio.wait_for(asyncio.gather(killer(), *(client(n, http) for n in range(CLIENTS))), 120)
    return accepted, cut_off


async def _create_token(database_url: str) -> str:
    db, _, tokens, _ = build_core(make_settings(database_url))
    try:
        await upgrade(db)
        return str(await tokens.create(name="crash-agent", role="agent"))
    finally:
        await db.close()


async def _crash_and_recover(database_url: str, tmp_path: Path) -> None:
    env = cli_env(database_url)
    token = await _create_token(database_url)  # the CLI's own `tokens create` is tested in test_cli
    first = await asyncio.to_thread(Server(env, cwd=tmp_path).start)
    try:
        accepted, cut_off = await _load_then_kill(first, token)
    finally:
        first.kill()
    assert first.proc is not None and first.proc.returncode == -9
    assert len(accepted) >= ENOUGH
    assert cut_off >= 1  # the kill really landed under load

    second = await asyncio.to_thread(Server(env, cwd=tmp_path).start)
    try:
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as http:
            sem = asyncio.Semaphore(16)

            async def get(rid: str) -> tuple[int, Any]:
                async with sem, http.get(f"{second.url}/v1/requests/{rid}", headers=headers) as r:
                    return r.status, await r.json()

            results = await asyncio.gather(*(get(rid) for rid in accepted))
            for rid, (status, out) in zip(accepted, results, strict=True):
                assert status == 200, (rid, out)
                assert out["id"] == rid
                assert out["action"]["args"] == accepted[rid]["action"]["args"]
                assert out["status"] == "pending"
            # A client retrying an accepted submission after the crash gets the original, not a duplicate.
            rid, body = next(iter(accepted.items()))
            async with http.post(second.url + "/v1/requests", json=body, headers=headers) as r:
                assert r.status == 200
                assert (await r.json())["id"] == rid
    finally:
        with contextlib.suppress(Exception):
            second.stop()
        second.kill()


async def test_sigkill_under_load_loses_nothing_on_sqlite(tmp_path: Path) -> None:
    await _crash_and_recover(f"sqlite:///{tmp_path / 'crash.db'}", tmp_path)


@pytest.mark.timeout(180)
async def test_sigkill_under_load_loses_nothing_on_postgres(pg_url: str, tmp_path: Path) -> None:
    await _crash_and_recover(pg_url, tmp_path)
