"""``signoff serve --workers N``: several server processes on one port over PostgreSQL; refused on SQLite."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path

import aiohttp
import psutil
import pytest

from tests.support.proc import Server, cli_env, run_cli


def _post(url: str, token: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json", "Connection": "close"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, json.loads(r.read())


def test_two_workers_share_the_port_and_wake_each_others_waiters(pg_url: str, tmp_path: Path) -> None:
    env = cli_env(pg_url, SIGNOFF_WORKERS="2")
    server = Server(env, cwd=tmp_path).start()
    try:
        parent = psutil.Process(server.proc.pid)  # type: ignore[union-attr]
        deadline = time.monotonic() + 30
        while len(parent.children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = parent.children()
        assert len(workers) == 2
        agent = run_cli(env, "tokens", "create", "agent-w", "--role", "agent").stdout.strip().splitlines()[-1]
        reviewer = run_cli(env, "tokens", "create", "rev-w", "--role", "reviewer").stdout.strip().splitlines()[-1]

        ids = []
        for n in range(20):  # a new connection each: the kernel spreads them over both workers
            status, out = _post(server.url + "/v1/requests", agent,
                                {"action": {"tool": "send_email", "args": {"n": n}}, "idempotency_key": f"w-{n}"})
            assert status == 201
            ids.append(str(out["id"]))

        async def wait_and_decide() -> list[tuple[str, float]]:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
                async def wait(rid: str) -> dict[str, object]:
                    async with http.get(f"{server.url}/v1/requests/{rid}/wait?timeout_s=30",
                                        headers={"Authorization": f"Bearer {agent}"}) as r:
                        assert r.status == 200
                        return dict(await r.json())

                waits = {rid: asyncio.create_task(wait(rid)) for rid in ids}
                await asyncio.sleep(1.0)  # parked, on whichever worker each connection reached
                seen = []
                for rid in ids:
                    t0 = time.monotonic()
                    async with http.post(f"{server.url}/v1/requests/{rid}/decision", json={"decision": "approve"},
                                         headers={"Authorization": f"Bearer {reviewer}"}) as r:
                        assert r.status == 200
                    out = await asyncio.wait_for(waits[rid], 5)
                    seen.append((str(out["status"]), time.monotonic() - t0))
                return seen

        seen = asyncio.run(wait_and_decide())
        assert [s for s, _ in seen] == ["approved"] * 20
        # Across workers the wake comes through LISTEN/NOTIFY (PRODUCT.md §6.3: within 250 ms), not the re-read.
        assert max(t for _, t in seen) < 1.0, seen
        assert {w.pid for w in workers} == {w.pid for w in parent.children()}  # nobody restarted meanwhile
    finally:
        code = server.stop()
    assert code == 0
    assert all(not w.is_running() or w.status() == psutil.STATUS_ZOMBIE for w in workers)


def test_workers_are_refused_on_sqlite(tmp_path: Path) -> None:
    env = cli_env(f"sqlite:///{tmp_path / 'w.db'}", SIGNOFF_PORT="3999")
    out = run_cli(env, "serve", "--workers", "2")
    assert out.returncode == 2
    assert "needs PostgreSQL" in out.stderr


@pytest.mark.parametrize("value", ["0", "65", "two"])
def test_a_bad_worker_count_is_named(tmp_path: Path, value: str) -> None:
    out = run_cli(cli_env(f"sqlite:///{tmp_path / 'w.db'}", SIGNOFF_WORKERS=value), "serve")
    assert out.returncode == 2
    assert "SIGNOFF_WORKERS" in out.stderr and value in out.stderr
