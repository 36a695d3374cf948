"""The load generator. It runs in its own process so it never competes for the server's event loop.

Usage (the bench runner starts it): ``python bench/loadgen.py MODE CONFIG_JSON``. It talks to the runner on
stdout, one line each: ``MARK start`` / ``MARK end`` around the measured window (the runner samples the
server's CPU there), ``READY {json}`` when it holds connections open and waits for ``release`` on stdin, and
finally ``RESULT {json}``. Only the standard library and aiohttp are used, nothing of the server's code.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import resource
import sys
import time
import uuid
from collections import Counter
from typing import Any

import aiohttp

JSON_HEADERS = {"Content-Type": "application/json"}


def emit(kind: str, payload: Any = None) -> None:
    line = kind if payload is None else f"{kind} {payload if isinstance(payload, str) else json.dumps(payload)}"
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1) of a list of values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summary_ms(values: list[float]) -> dict[str, float | None]:
    ms = [v * 1000 for v in values]
    return {"p50_ms": pct(ms, 0.50), "p99_ms": pct(ms, 0.99), "max_ms": max(ms) if ms else None}


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def submit_body(worker: int, n: int) -> bytes:
    """A realistic submission: an email draft with context, a label, and an idempotency key as the client sends."""
    return json.dumps({
        "action": {"tool": "send_email", "args": {
            "to": f"customer{n}@example.com", "subject": f"Refund for order #{worker}-{n}",
            "body": "Hello,\n\nwe have issued a refund of 42.00 EUR for your order. It should arrive in 3-5 "
                    "business days.\n\nBest regards,\nSupport"}},
        "context": {"summary": f"Refund confirmation for order #{worker}-{n}",
                    "user_request": "Please tell the customer the refund went through"},
        "risk": "medium",
        "labels": ["needs-human-review"],
        "timeout_s": 3600,
        "idempotency_key": uuid.uuid4().hex,
    }).encode()


async def _send(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[int | str, bytes]:
    try:
        async with http.request(method, url, **kw) as r:
            return r.status, await r.read()
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        return type(e).__name__, b""


# --- intake ----------------------------------------------------------------------------------------------


class _Conn(asyncio.Protocol):
    """A keep-alive HTTP/1.1 connection that sends one request at a time and reads status + body.

    The intake generator speaks HTTP itself because it shares the machine's two cores with the server: an
    aiohttp client costs about 0.3 ms of CPU per request, a third of what the server spends, and every
    millisecond it burns is taken from the server being measured."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionResetError("connection closed")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(self.lost)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        head_end = self.buf.find(b"\r\n\r\n")
        if head_end < 0 or self.waiter is None:
            return
        head = bytes(self.buf[:head_end]).decode("latin-1").split("\r\n")
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        end = head_end + 4 + length
        if len(self.buf) < end:
            return
        body = bytes(self.buf[head_end + 4 : end])
        del self.buf[:end]
        if not self.waiter.done():
            self.waiter.set_result((int(head[0].split(" ", 2)[1]), body))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.lost is not None or self.transport is None:
            raise self.lost or ConnectionResetError("not connected")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


async def intake(cfg: dict[str, Any]) -> dict[str, Any]:
    """``clients`` workers POST /v1/requests back to back, each on its own keep-alive connection."""
    base, clients = cfg["url"], int(cfg["clients"])
    host, port = base.removeprefix("http://").split(":")
    warmup, duration = float(cfg["warmup_s"]), float(cfg["duration_s"])
    head = (f"POST /v1/requests HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {cfg['token']}\r\n"
            "Content-Type: application/json\r\nContent-Length: ").encode()
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    window = {"start": math.inf, "end": math.inf}
    loop = asyncio.get_running_loop()
    t_begin = time.perf_counter()
    window["start"] = t_begin + warmup
    window["end"] = window["start"] + duration

    async def worker(i: int) -> None:
        conn: _Conn | None = None
        n = 0
        while True:
            t0 = time.perf_counter()
            if t0 >= window["end"]:
                break
            body = submit_body(i, n)
            n += 1
            try:
                if conn is None or conn.lost is not None:
                    _, conn = await loop.create_connection(_Conn, host, int(port))
                status: int | str
                status, _ = await conn.request(head + str(len(body)).encode() + b"\r\n\r\n" + body)
            except OSError as e:
                status, conn = type(e).__name__, None
            t1 = time.perf_counter()
            if window["start"] <= t1 < window["end"]:
                if status == 201:
                    latencies.append(t1 - t0)
                else:
                    errors[str(status)] += 1
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    async def marks() -> tuple[float, float]:
        await asyncio.sleep(max(0.0, window["start"] - time.perf_counter()))
        emit("MARK", "start")
        c0 = cpu_seconds()
        await asyncio.sleep(max(0.0, window["end"] - time.perf_counter()))
        emit("MARK", "end")
        return c0, cpu_seconds()

    mark_task = asyncio.create_task(marks())
    await asyncio.gather(*(worker(i) for i in range(clients)))
    c0, c1 = await mark_task
    return {
        "ok": len(latencies),
        "rps": len(latencies) / duration,
        **summary_ms(latencies),
        "errors": dict(errors),
        "gen_cpu_pct": 100.0 * (c1 - c0) / duration,
    }


# --- wake latency ------------------------------------------------------------------------------------------


async def waiting_agents(http: aiohttp.ClientSession, base: str) -> int:
    """The server's own count of parked /wait calls (the metrics gauge is refreshed on each scrape)."""
    status, body = await _send(http, "GET", base + "/metrics")
    if status != 200:
        return -1
    for line in body.decode().splitlines():
        if line.startswith("signoff_waiting_agents "):
            return int(float(line.split()[1]))
    return -1


async def wait_until_parked(http: aiohttp.ClientSession, base: str, want: int, timeout_s: float,
                            every_s: float = 0.25) -> int:
    deadline = time.monotonic() + timeout_s
    n = await waiting_agents(http, base)
    while n < want and time.monotonic() < deadline:
        await asyncio.sleep(every_s)
        n = await waiting_agents(http, base)
    return n


async def wake(cfg: dict[str, Any]) -> dict[str, Any]:
    """For each of ``decisions`` requests an agent is parked on /wait; the bench decides them one by one.

    Per decision: t0 just before the decision POST is sent, t1 when its response has been read, t2 when the
    waiting agent's /wait response has been read (same process and clock). ``wake`` = t2 - t1 (negative when
    the waiter was answered before the decider), ``e2e`` = t2 - t0, ``decide`` = t1 - t0.
    """
    base, count = cfg["url"], int(cfg["decisions"])
    agent = {"Authorization": f"Bearer {cfg['agent_token']}"}
    reviewer = {"Authorization": f"Bearer {cfg['reviewer_token']}", **JSON_HEADERS}
    errors: Counter[str] = Counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        sem = asyncio.Semaphore(32)

        async def create(i: int) -> str | None:
            async with sem:
                status, body = await _send(http, "POST", base + "/v1/requests", data=submit_body(-1, i),
                                           headers={**agent, **JSON_HEADERS})
            if status != 201:
                errors[f"submit {status}"] += 1
                return None
            return str(json.loads(body)["id"])

        ids = [i for i in await asyncio.gather(*(create(i) for i in range(count))) if i]

        async def wait(rid: str) -> tuple[float, int | str, str]:
            status, body = await _send(http, "GET", f"{base}/v1/requests/{rid}/wait?timeout_s=60", headers=agent)
            t2 = time.perf_counter()
            return t2, status, (json.loads(body).get("status", "?") if status == 200 else "?")

        waits = {rid: asyncio.create_task(wait(rid)) for rid in ids}
        parked = await wait_until_parked(http, base, len(ids), 20.0)
        kinds = ("approve", "edit", "reject")
        e2e: list[float] = []
        woke: list[float] = []
        decide: list[float] = []
        for n, rid in enumerate(ids):
            kind = kinds[n % len(kinds)]
            body: dict[str, Any] = {"decision": kind, "reviewer": {"id": "UBENCH01", "name": "Bench Reviewer"}}
            if kind == "edit":
                body["args"] = {"to": "someone-else@example.com", "subject": "Edited", "body": "Edited body"}
            if kind == "reject":
                body["feedback"] = "not now; bench rejection"
            data = json.dumps(body).encode()
            t0 = time.perf_counter()
            status, _ = await _send(http, "POST", f"{base}/v1/requests/{rid}/decision", data=data, headers=reviewer)
            t1 = time.perf_counter()
            if status != 200:
                errors[f"decision {status}"] += 1
                continue
            try:
                t2, wstatus, final = await asyncio.wait_for(waits[rid], timeout=5.0)
            except TimeoutError:
                errors["wait did not return within 5 s"] += 1
                continue
            if wstatus != 200 or final == "pending":
                errors[f"wait {wstatus} {final}"] += 1
                continue
            e2e.append(t2 - t0)
            woke.append(t2 - t1)
            decide.append(t1 - t0)
        for t in waits.values():
            t.cancel()
        await asyncio.gather(*waits.values(), return_exceptions=True)
    return {
        "decisions": len(e2e),
        "parked_before_first_decision": parked,
        "wake": summary_ms(woke),
        "e2e": summary_ms(e2e),
        "decide": summary_ms(decide),
        "waiter_first_pct": 100.0 * sum(1 for w in woke if w < 0) / max(1, len(woke)),
        "errors": dict(errors),
    }


# --- list/get traffic -------------------------------------------------------------------------------------


async def traffic(cfg: dict[str, Any]) -> dict[str, Any]:
    """Reviewers' and agents' reads: pages through the list (with the cursor), filtered lists, single gets."""
    base = cfg["url"]
    ids: list[str] = json.loads(open(cfg["ids_file"]).read())  # noqa: SIM115, ASYNC230 - small file, read once
    headers = {"Authorization": f"Bearer {cfg['token']}"}
    deadline = time.monotonic() + float(cfg["max_s"])
    counts: Counter[str] = Counter()
    lat: dict[str, list[float]] = {"list": [], "get": []}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16), headers=headers) as http:

        async def timed(kind: str, url: str) -> bytes:
            t0 = time.perf_counter()
            status, body = await _send(http, "GET", url)
            counts[f"{kind} {status}"] += 1
            if status == 200:
                lat[kind].append(time.perf_counter() - t0)
            return body if status == 200 else b""

        async def pager(start_query: str, pages: int) -> None:
            cursor = None
            for _ in range(pages):
                if time.monotonic() > deadline:
                    return
                q = start_query + (f"&cursor={cursor}" if cursor else "")
                body = await timed("list", f"{base}/v1/requests?{q}")
                cursor = json.loads(body).get("next_cursor") if body else None
                if not cursor:
                    return

        async def getter(chunk: list[str]) -> None:
            for rid in chunk:
                if time.monotonic() > deadline:
                    return
                await timed("get", f"{base}/v1/requests/{rid}")

        pages = int(cfg["list_pages"])
        sample = random.sample(ids, min(len(ids), int(cfg["gets"])))
        jobs = [
            pager("limit=200", pages),
            pager("limit=200&status=pending", pages // 2),
            pager("limit=100&label=needs-human-review", pages // 2),
            pager("limit=100&tool=issue_refund", pages // 4),
            *(getter(sample[i::8]) for i in range(8)),
        ]
        await asyncio.gather(*jobs)
    return {"counts": dict(counts), "list": summary_ms(lat["list"]), "get": summary_ms(lat["get"]),
            "errors": sum(n for k, n in counts.items() if not k.endswith(" 200"))}


# --- many waiting agents ------------------------------------------------------------------------------------


async def waiters(cfg: dict[str, Any]) -> dict[str, Any]:
    """Park one /wait per id, hold them until the runner says ``release``, then close every connection.

    The waits are opened on a ramp that keeps at most ``max_unparked`` of them queued in the server (judged by
    its waiting gauge, scraped at most once a second because a scrape counts every request), so the
    server's accept backlog never overflows; parking stops after ``park_timeout_s``.
    """
    base = cfg["url"]
    ids: list[str] = json.loads(open(cfg["ids_file"]).read())  # noqa: SIM115, ASYNC230 - small file, read once
    headers = {"Authorization": f"Bearer {cfg['token']}"}
    step, max_unparked = int(cfg.get("ramp_step", 200)), int(cfg.get("max_unparked", 1000))
    outcomes: Counter[str] = Counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=None)) as http, \
            aiohttp.ClientSession() as probe:

        async def wait(rid: str) -> None:
            status, _ = await _send(http, "GET", f"{base}/v1/requests/{rid}/wait?timeout_s=60")
            outcomes[f"returned {status}"] += 1

        t0 = time.perf_counter()
        deadline = time.monotonic() + float(cfg.get("park_timeout_s", 45))
        tasks: list[asyncio.Task[None]] = []
        parked, last_poll = 0, 0.0
        while len(tasks) < len(ids) and time.monotonic() < deadline:
            if len(tasks) - parked < max_unparked:
                tasks.extend(asyncio.create_task(wait(rid)) for rid in ids[len(tasks) : len(tasks) + step])
            await asyncio.sleep(0.05)
            if time.monotonic() - last_poll >= 1.0:
                parked, last_poll = await waiting_agents(probe, base), time.monotonic()
        parked = await wait_until_parked(probe, base, len(ids), max(1.0, deadline - time.monotonic()), every_s=1.0)
        ramp_s = time.perf_counter() - t0
        emit("READY", {"parked": parked, "opened": len(tasks), "ramp_s": ramp_s,
                       "returned_early": dict(outcomes)})
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        early = dict(outcomes)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"parked": parked, "opened": len(tasks), "ramp_s": ramp_s, "returned_before_release": early}


MODES = {"intake": intake, "wake": wake, "traffic": traffic, "waiters": waiters}


def main() -> None:
    mode, cfg = sys.argv[1], json.loads(sys.argv[2])
    raise_fd_limit()
    emit("RESULT", asyncio.run(MODES[mode](cfg)))


if __name__ == "__main__":
    main()
