"""signoff benchmarks: intake, decision → waiting-agent wake latency, and memory (issue 2, point 10).

Run ``make bench`` (or ``.venv/bin/python bench/run.py [--only intake|wake|memory] [--store sqlite|postgres]
[--duration S]``). The real server runs as its own process (``python -m bot.cli serve``) on a fresh database per
phase, tokens are created with the CLI, and load comes from a separate generator process
(``bench/loadgen.py``). PostgreSQL is the throwaway server of ``tests/support/pg.py`` with fsync and
synchronous_commit on. Everything started here is stopped on exit, on Ctrl-C and on errors; the raw figures
are also written to ``bench/out/``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT)] if str(ROOT) not in sys.path else []

from procs import LoadGen, RssSampler, Server, cpu_by_pid, cpu_seconds, postgres_processes  # noqa: E402
from seed import seed  # noqa: E402
from spy import Recorder, summarise  # noqa: E402

from tests.support.pg import create_database, free_port, postgres_server  # noqa: E402

AGENT, REVIEWER = "bench-agent", "bench-reviewer"
INTAKE_RPS = 1500.0
WAKE_P99_MS = 10.0
E2E_P99_MS = 50.0  # PRODUCT.md §6.3: the waiting agent learns the decision within 50 ms on the same replica
RSS_MB = 150.0
IDLE_CPU_PCT = 2.0


@dataclass
class Row:
    metric: str
    measured: str
    target: str = "—"
    ok: bool | None = None


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    def add(self, metric: str, measured: str, target: str = "—", ok: bool | None = None) -> None:
        self.rows.append(Row(metric, measured, target, ok))
        mark = "" if ok is None else ("  PASS" if ok else "  FAIL")
        print(f"    {metric:<46} {measured:<22} {target}{mark}", flush=True)

    def table(self) -> str:
        head = ("metric", "measured", "target", "pass/fail")
        cells = [head, *((r.metric, r.measured, r.target, "—" if r.ok is None else ("pass" if r.ok else "FAIL"))
                         for r in self.rows)]
        widths = [max(len(c[i]) for c in cells) for i in range(4)]
        line = "+-" + "-+-".join("-" * w for w in widths) + "-+"
        out = [line]
        for n, c in enumerate(cells):
            out.append("| " + " | ".join(c[i].ljust(widths[i]) for i in range(4)) + " |")
            if n == 0:
                out.append(line)
        out.append(line)
        return "\n".join(out)


OUT = BENCH / "out" / time.strftime("%Y%m%d-%H%M%S")


@contextlib.contextmanager
def profiled(args: argparse.Namespace, server: Server, name: str) -> Iterator[None]:
    """With ``--profile``, record the server with py-spy for the block and print where its time went."""
    if not args.profile:
        yield
        return
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"profile-{name}.txt"
    with Recorder(server.process.pid, path):
        yield
    print(f"    profile of the server during {name} ({path.relative_to(ROOT)}):")
    for line in summarise(path).lines():
        print(f"      {line}")


def ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f} ms"


def step(text: str) -> None:
    print(f"  - {text}", flush=True)


# --- databases --------------------------------------------------------------------------------------------


class Stores:
    """Fresh databases per phase: SQLite files in a temporary directory, databases on one PostgreSQL server."""

    def __init__(self, stack: contextlib.ExitStack, workdir: Path, report: Report) -> None:
        self._stack = stack
        self.workdir = workdir
        self._report = report
        self._pg_url: str | None = None
        self.pg_port: int | None = None

    def url(self, store: str, phase: str) -> str:
        if store == "sqlite":
            return f"sqlite:///{self.workdir / f'{phase}.db'}"
        if self._pg_url is None:
            step("starting PostgreSQL (tests/support/pg.py, fsync=on, synchronous_commit=on)")
            self._pg_url = self._stack.enter_context(postgres_server(fsync=True))
            self.pg_port = int(self._pg_url.rsplit(":", 1)[1].split("/")[0])
            settings = asyncio.run(_pg_settings(self._pg_url))
            self._report.notes.append("PostgreSQL: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
            step("PostgreSQL " + ", ".join(f"{k}={v}" for k, v in settings.items()))
            if settings.get("fsync") != "on" or settings.get("synchronous_commit") != "on":
                raise RuntimeError("PostgreSQL must run with fsync and synchronous_commit on for honest figures")
        return create_database(self._pg_url, f"bench_{phase}")


async def _pg_settings(url: str) -> dict[str, str]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        names = ("server_version", "fsync", "synchronous_commit", "wal_sync_method", "full_page_writes")
        return {n: str(await conn.fetchval(f"SHOW {n}")) for n in names}
    finally:
        await conn.close()


@contextlib.contextmanager
def running_server(url: str, workdir: Path, *, seed_rows: tuple[int, int] | None = None,
                   seeded: list[str] | None = None, workers: int = 1) -> Iterator[Server]:
    """Tokens through the CLI (which also applies the migrations), optional seeding, then ``serve``."""
    server = Server(database_url=url, workdir=workdir, port=free_port(), workers=workers)
    server.create_token(AGENT, "agent")
    server.create_token(REVIEWER, "reviewer")
    if seed_rows is not None:
        pending, overdue = seed_rows
        t0 = time.monotonic()
        ids = seed(url, agent=AGENT, pending=pending, overdue=overdue)
        step(f"seeded {pending:,} pending + {overdue:,} overdue requests (and their labels) directly through "
             f"storage.repository's bulk inserts in {time.monotonic() - t0:.1f} s, before the server started")
        if seeded is not None:
            seeded.extend(ids)
    try:
        server.start()
        yield server
    finally:
        server.stop(grace_s=5.0)
        OUT.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            shutil.copy(workdir / f"server-{server.port}.log", OUT / f"server-{phase_name(url)}.log")


def phase_name(url: str) -> str:
    return ("postgres-" if url.startswith("postgres") else "sqlite-") + url.rsplit("/", 1)[-1].split(".")[0]


# --- phases -------------------------------------------------------------------------------------------------


def phase_intake(server: Server, store: str, args: argparse.Namespace, report: Report, pg_port: int | None) -> None:
    if server.workers > 1:
        store = f"{store} --workers {server.workers}"
        deadline = time.monotonic() + 30
        while len(server.processes) < server.workers + 1 and time.monotonic() < deadline:
            time.sleep(0.1)
    step(f"intake ({store}): {args.clients} concurrent clients POST /v1/requests for {args.duration:g} s "
         f"(after {args.warmup:g} s warm-up)")
    gen = LoadGen("intake", {"url": server.url, "token": server.tokens[AGENT], "clients": args.clients,
                             "warmup_s": args.warmup, "duration_s": args.duration})
    marks: dict[str, tuple[float, float, dict[int, float]]] = {}

    def on_event(kind: str, payload: Any) -> None:
        if kind == "MARK":
            # PostgreSQL's processes are listed at each mark: a backend that starts during the run counts from
            # zero, and one listed only at the start (it exited) is left out rather than counted negative.
            pg = cpu_by_pid(postgres_processes(pg_port)) if pg_port is not None else {}
            marks[payload] = (time.monotonic(), cpu_seconds(server.processes), pg)

    try:
        with profiled(args, server, f"intake-{store}"):
            res = gen.run(args.warmup + args.duration + 60, on_event)
    finally:
        gen.stop()
    (t0, s0, p0), (t1, s1, p1) = marks["start"], marks["end"]
    res["server_cpu_pct"] = 100 * (s1 - s0) / (t1 - t0)
    res["server_cpu_ms_per_request"] = 1000 * (s1 - s0) / max(1, res["ok"])
    res["postgres_cpu_pct"] = (100 * sum(cpu - p0.get(pid, 0.0) for pid, cpu in p1.items()) / (t1 - t0)
                               if p1 else None)
    report.raw[f"intake/{store}"] = res
    errors = sum(res["errors"].values())
    report.add(f"intake {store}: requests/s", f"{res['rps']:,.0f}/s", f">= {INTAKE_RPS:,.0f}/s",
               res["rps"] >= INTAKE_RPS)
    report.add(f"intake {store}: latency p50 / p99", f"{ms(res['p50_ms'])} / {ms(res['p99_ms'])}")
    report.add(f"intake {store}: errors", f"{errors}" + (f" {res['errors']}" if errors else ""), "0", errors == 0)
    cpu = f"server {res['server_cpu_pct']:.0f}%, generator {res['gen_cpu_pct']:.0f}%"
    if res["postgres_cpu_pct"] is not None:
        cpu += f", postgres {res['postgres_cpu_pct']:.0f}%"
    report.add(f"intake {store}: CPU (100% = one core)", cpu)
    per = res["server_cpu_ms_per_request"]
    report.add(f"intake {store}: server CPU per request", f"{per:.2f} ms (≤ {1000 / per:,.0f}/s per core)",
               f"<= {1000 / INTAKE_RPS:.2f} ms (1,500/s on one core)", per <= 1000 / INTAKE_RPS)


def phase_wake(server: Server, store: str, args: argparse.Namespace, report: Report) -> None:
    step(f"wake: {args.decisions} requests, each with an agent parked on /wait; decided one at a time via the API")
    gen = LoadGen("wake", {"url": server.url, "agent_token": server.tokens[AGENT],
                           "reviewer_token": server.tokens[REVIEWER], "decisions": args.decisions})
    try:
        with profiled(args, server, f"wake-{store}"):
            res = gen.run(180)
    finally:
        gen.stop()
    report.raw[f"wake/{store}"] = res
    wake, e2e, decide = res["wake"], res["e2e"], res["decide"]
    report.add(f"wake {store}: decision reply → waiter reply p50/p99", f"{ms(wake['p50_ms'])} / {ms(wake['p99_ms'])}",
               f"p99 <= {WAKE_P99_MS:g} ms", wake["p99_ms"] is not None and wake["p99_ms"] <= WAKE_P99_MS)
    report.add(f"wake {store}: decision sent → waiter reply p50/p99", f"{ms(e2e['p50_ms'])} / {ms(e2e['p99_ms'])}",
               f"p99 <= {E2E_P99_MS:g} ms (§6.3)", e2e["p99_ms"] is not None and e2e["p99_ms"] <= E2E_P99_MS)
    report.add(f"wake {store}: decision round trip p50/p99", f"{ms(decide['p50_ms'])} / {ms(decide['p99_ms'])}")
    errors = sum(res["errors"].values())
    report.add(f"wake {store}: decisions measured / errors", f"{res['decisions']} / {errors}",
               f"{args.decisions} / 0", res["decisions"] == args.decisions and errors == 0)
    if errors:
        report.notes.append(f"wake {store} errors: {res['errors']}")


def phase_memory(url: str, workdir: Path, store: str, args: argparse.Namespace, report: Report) -> None:
    step(f"memory: {args.pending:,} pending requests, list/get traffic, expiry sweep, then {args.waiters:,} "
         "agents parked on /wait")
    overdue = args.pending // 20
    ids: list[str] = []
    with running_server(url, workdir, seed_rows=(args.pending, overdue), seeded=ids) as server:
        proc = server.process
        rss_start = server.rss_mb()
        ids_file = workdir / f"ids-{store}.json"
        ids_file.write_text(json.dumps(ids))
        with RssSampler(proc) as sampler:
            gen = LoadGen("traffic", {"url": server.url, "token": server.tokens[AGENT], "ids_file": str(ids_file),
                                      "list_pages": 100, "gets": 2000, "max_s": 15})
            try:
                with profiled(args, server, f"reads-{store}"):
                    traffic = gen.run(60)
            finally:
                gen.stop()
            deadline = time.monotonic() + 60
            expired = pending = None
            while time.monotonic() < deadline:
                expired = server.metric("signoff_requests", 'status="expired"')
                pending = server.metric("signoff_requests", 'status="pending"')
                if expired is not None and expired >= overdue and pending == args.pending:
                    break
                time.sleep(0.5)
            swept = expired is not None and expired >= overdue
            time.sleep(1.0)
            with profiled(args, server, f"idle-{store}"):
                idle_cpu = cpu_percent(server, 5.0)  # nobody calls: what the sweeps alone cost over 100k pending
            rss_loaded = server.rss_mb()
            peak_loaded = sampler.peak_mb
        report.raw[f"memory/{store}"] = {"rss_start_mb": rss_start, "rss_loaded_mb": rss_loaded, "idle_cpu": idle_cpu,
                                         "peak_mb": peak_loaded, "traffic": traffic, "expired": expired,
                                         "pending": pending}
        step(f"traffic: {traffic['counts']}; list p50/p99 {ms(traffic['list']['p50_ms'])}/"
             f"{ms(traffic['list']['p99_ms'])}, get p50/p99 {ms(traffic['get']['p50_ms'])}/"
             f"{ms(traffic['get']['p99_ms'])}; sweep expired {expired and int(expired)} of {overdue}")
        report.add(f"memory {store}: RSS at start / peak", f"{rss_start:.0f} MB / {peak_loaded:.0f} MB")
        report.add(f"memory {store}: RSS, {args.pending:,} pending, after reads+sweep", f"{rss_loaded:.0f} MB",
                   f"<= {RSS_MB:g} MB", rss_loaded <= RSS_MB and swept and traffic["errors"] == 0)
        report.add(f"memory {store}: server CPU, idle, {args.pending:,} pending", f"{idle_cpu:.1f}%",
                   f"<= {IDLE_CPU_PCT:g}% (idle)", idle_cpu <= IDLE_CPU_PCT)
        if not swept or traffic["errors"]:
            report.notes.append(f"memory {store}: sweep expired {expired} of {overdue}; read errors "
                                f"{traffic['errors']} ({traffic['counts']})")
        waiting_phase(server, ids[: args.waiters], workdir, store, args, report, rss_before=rss_loaded)
    graceful = server.stop_seconds
    report.add(f"memory {store}: server stop (SIGTERM) after the waiters left",
               "killed after 5 s" if graceful is None else f"{graceful:.1f} s")


def cpu_percent(server: Server, window_s: float) -> float:
    t0, c0 = time.monotonic(), cpu_seconds([server.process])
    time.sleep(window_s)
    return 100 * (cpu_seconds([server.process]) - c0) / (time.monotonic() - t0)


def waiting_phase(server: Server, ids: list[str], workdir: Path, store: str, args: argparse.Namespace,
                  report: Report, *, rss_before: float) -> None:
    ids_file = workdir / f"wait-ids-{store}.json"
    ids_file.write_text(json.dumps(ids))
    gen = LoadGen("waiters", {"url": server.url, "token": server.tokens[AGENT], "ids_file": str(ids_file),
                              "park_timeout_s": 35})
    window = 5.0
    seen: dict[str, Any] = {}

    def on_event(kind: str, payload: Any) -> None:
        if kind != "READY":
            return
        seen.update(payload)
        time.sleep(1.0)  # let the last wake-ups and the scrape settle
        g0 = cpu_seconds([gen.process])
        seen["server_cpu_pct"] = cpu_percent(server, window)
        seen["gen_cpu_pct"] = 100 * (cpu_seconds([gen.process]) - g0) / window
        seen["rss_mb"] = server.rss_mb()
        seen["connections"] = len(server.process.net_connections(kind="tcp"))
        gen.send("release")

    try:
        with profiled(args, server, f"waiters-{store}"):
            res = gen.run(180, on_event)
    finally:
        gen.stop()
    report.raw[f"waiting/{store}"] = {**seen, **res}
    n = len(ids)
    early = dict(res.get("returned_before_release", {}))
    step(f"{seen.get('parked')} of {n} agents parked ({seen.get('opened')} opened) in "
         f"{seen.get('ramp_s', 0):.1f} s; server holds {seen.get('connections')} TCP connections; "
         f"waits that returned before the release: {early or 'none'}")
    parked_ok = seen.get("parked", 0) >= n
    report.add(f"memory {store}: agents parked on /wait", f"{seen.get('parked')} in {seen.get('ramp_s', 0):.0f} s",
               f"{n:,}", parked_ok)
    report.add(f"memory {store}: /wait answered early (errors)", f"{sum(early.values())} {early or ''}".strip(),
               "0", not early)
    report.add(f"memory {store}: RSS, {seen.get('parked')} agents waiting", f"{seen.get('rss_mb', 0):.0f} MB",
               f"<= {RSS_MB:g} MB", parked_ok and seen.get("rss_mb", 1e9) <= RSS_MB)
    opened = int(seen.get("opened") or 0)
    if opened and "rss_mb" in seen:
        per_kb = (seen["rss_mb"] - rss_before) * 1024 / opened
        report.add(f"memory {store}: RSS per open /wait connection",
                   f"{per_kb:.1f} KB (→ {rss_before + per_kb * n / 1024:.0f} MB at {n:,})")
    report.add(f"memory {store}: server CPU while they wait ({window:g} s)",
               f"{seen.get('server_cpu_pct', 100):.1f}% (gen {seen.get('gen_cpu_pct', 0):.1f}%)",
               f"<= {IDLE_CPU_PCT:g}% (idle)", parked_ok and seen.get("server_cpu_pct", 100) <= IDLE_CPU_PCT)


# --- main -----------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=("intake", "wake", "memory"), help="run one phase (default: all)")
    p.add_argument("--store", choices=("sqlite", "postgres"), help="one store (default: both)")
    p.add_argument("--duration", type=float, default=10.0, help="intake measuring window in seconds (10)")
    p.add_argument("--warmup", type=float, default=1.0, help="intake warm-up, not measured (1)")
    p.add_argument("--clients", type=int, default=32, help="concurrent intake clients (32)")
    p.add_argument("--workers", type=int, default=2,
                   help="also measure intake on PostgreSQL with `serve --workers N` (2; 1 skips it)")
    p.add_argument("--decisions", type=int, default=500, help="decisions in the wake phase (500)")
    p.add_argument("--pending", type=int, default=100_000, help="pending requests in the memory phase")
    p.add_argument("--waiters", type=int, default=10_000, help="agents parked on /wait in the memory phase")
    p.add_argument("--profile", action="store_true",
                   help="sample the server with py-spy in every phase and print where its time goes")
    return p.parse_args(argv)


def _terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(args: argparse.Namespace, report: Report) -> None:
    stores = [args.store] if args.store else ["sqlite", "postgres"]
    phases = [args.only] if args.only else ["intake", "wake", "memory"]
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="signoff-bench-")))
        dbs = Stores(stack, workdir, report)
        for store in stores:
            print(f"\n== {store} ==", flush=True)
            if "intake" in phases or "wake" in phases:
                url = dbs.url(store, "api")
                with running_server(url, workdir) as server:
                    if "intake" in phases:
                        phase_intake(server, store, args, report, dbs.pg_port if store == "postgres" else None)
                    if "wake" in phases:
                        phase_wake(server, store, args, report)
            if "intake" in phases and store == "postgres" and args.workers > 1:
                # PostgreSQL is the scale-out store: one machine's cores serve through several processes.
                with running_server(dbs.url(store, "workers"), workdir, workers=args.workers) as server:
                    phase_intake(server, store, args, report, dbs.pg_port)
            if "memory" in phases:
                phase_memory(dbs.url(store, "memory"), workdir, store, args, report)
        step("stopping PostgreSQL" if dbs.pg_port else "cleaning up")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    report = Report()
    cpus = os.cpu_count()
    report.notes.append(
        f"{platform.node()}: {cpus} CPU cores, Python {platform.python_version()}, "
        f"load average before the run {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    report.notes.append(f"the load generator is a separate process on the same machine: it shares the {cpus} "
                        "cores with the server (and with PostgreSQL), so the figures are a lower bound")
    report.notes.append("SQLite runs as the server configures it: WAL, synchronous=NORMAL "
                        "(a commit is durable against a process crash; the WAL is fsynced at checkpoints)")
    report.notes.append("wake: 'decision reply → waiter reply' is the time from the decider getting its "
                        "response to the parked agent getting its response (negative when the agent was "
                        "answered first); 'decision sent → waiter reply' includes the decision's commit")
    if args.profile:
        report.notes.append("--profile: py-spy samples the server (200 Hz, non-blocking), which costs it some "
                            "CPU; read the profiles for where time goes, not the throughput figures")
    print(f"signoff bench — {report.notes[0]}", flush=True)
    t0 = time.monotonic()
    status = 0
    try:
        run(args, report)
    except KeyboardInterrupt:
        print("\ninterrupted; everything started was stopped", file=sys.stderr)
        status = 130
    except Exception as e:
        print(f"\nbench failed: {type(e).__name__}: {e}", file=sys.stderr)
        status = 2
    elapsed = time.monotonic() - t0
    load = os.getloadavg()
    report.notes.append(f"load average after the run {', '.join(f'{x:.2f}' for x in load)}"
                        + (" — the machine was busy with other work: throughput and latency figures are "
                           "contended; the CPU-per-request figures are the robust ones" if load[0] > 1.5 * (cpus or 1)
                           else ""))
    print(f"\nResults ({elapsed:.0f} s)\n" + report.table())
    for note in report.notes:
        print(f"* {note}")
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "results.json"
    path.write_text(json.dumps({"args": vars(args), "elapsed_s": elapsed, "notes": report.notes,
                                "rows": [r.__dict__ for r in report.rows], "raw": report.raw}, indent=2))
    print(f"* raw figures and server logs: {OUT.relative_to(ROOT)}/")
    if status == 0 and any(r.ok is False for r in report.rows):
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
