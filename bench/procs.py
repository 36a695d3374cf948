"""The processes the bench starts: the signoff server (``python -m bot.cli serve``) and the load generator.

Every child is started with a parent-death signal, so even a bench killed with SIGKILL leaves nothing
behind; the normal path stops them with SIGTERM and, after a grace period, SIGKILL.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


try:  # loaded here, not in the forked child, where loading a library could take a lock another thread held
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    _LIBC = None


def _child_setup() -> None:
    """In the child before exec: die with the bench (spawned from the main thread), allow many sockets."""
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _stop(proc: subprocess.Popen[Any], grace_s: float) -> float | None:
    """SIGTERM, then SIGKILL after ``grace_s``. Returns the seconds a graceful stop took, None if killed."""
    if proc.poll() is not None:
        return 0.0
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
        return time.monotonic() - t0
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        return None


def cpu_by_pid(procs: list[psutil.Process]) -> dict[int, float]:
    """User + system CPU seconds of each process still running."""
    out: dict[int, float] = {}
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        out[p.pid] = t.user + t.system
    return out


def cpu_seconds(procs: list[psutil.Process]) -> float:
    return sum(cpu_by_pid(procs).values())


@dataclass
class Server:
    """One ``signoff serve`` process on a database URL and a free loopback port."""

    database_url: str
    workdir: Path
    port: int
    tokens: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    workers: int = 1
    stop_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNOFF_", "SLACK_"))}
        env.update(SIGNOFF_DATABASE_URL=self.database_url, SIGNOFF_PORT=str(self.port),
                   SIGNOFF_HOST="127.0.0.1", SIGNOFF_LOG_LEVEL="WARNING", SIGNOFF_WORKERS=str(self.workers))
        return env

    def cli(self, *args: str) -> str:
        """Run ``signoff ARGS`` the way an operator would; returns stdout."""
        out = subprocess.run([sys.executable, "-m", "bot.cli", *args], env=self.env, cwd=self.workdir,
                             capture_output=True, text=True, timeout=120, preexec_fn=_child_setup)
        if out.returncode != 0:
            raise RuntimeError(f"signoff {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()}")
        return out.stdout

    def create_token(self, name: str, role: str) -> str:
        token = self.cli("tokens", "create", name, "--role", role).strip().splitlines()[-1]
        self.tokens[name] = token
        return token

    def start(self, timeout_s: float = 60.0) -> None:
        log = open(self.workdir / f"server-{self.port}.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve"], env=self.env, cwd=self.workdir,
                                     stdout=log, stderr=subprocess.STDOUT, preexec_fn=_child_setup)
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not become ready in {timeout_s:.0f} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = (self.workdir / f"server-{self.port}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    @property
    def process(self) -> psutil.Process:
        assert self.proc is not None
        return psutil.Process(self.proc.pid)

    @property
    def processes(self) -> list[psutil.Process]:
        """The server and, with ``--workers``, its worker processes (whose CPU is the server's)."""
        return [self.process, *self.process.children(recursive=True)]

    def rss_mb(self) -> float:
        return self.process.memory_info().rss / 2**20

    def metric(self, name: str, labels: str = "") -> float | None:
        """One value from ``/metrics`` (scraping refreshes the gauges)."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=30) as r:
            text = r.read().decode()
        want = f"{name}{{{labels}}} " if labels else f"{name} "
        for line in text.splitlines():
            if line.startswith(want):
                return float(line.split()[-1])
        return None

    def stop(self, grace_s: float = 15.0) -> None:
        if self.proc is not None:
            self.stop_seconds = _stop(self.proc, grace_s)


class RssSampler:
    """Samples a process's RSS in a thread; ``peak_mb`` is the largest value seen."""

    def __init__(self, proc: psutil.Process, every_s: float = 0.1) -> None:
        self._proc = proc
        self._every = every_s
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_mb = max(self.peak_mb, self._proc.memory_info().rss / 2**20)
            except psutil.Error:
                return
            self._stop.wait(self._every)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class LoadGen:
    """The load generator child (``bench/loadgen.py``), read line by line from its stdout."""

    def __init__(self, mode: str, config: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH / "loadgen.py"), mode, json.dumps(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, preexec_fn=_child_setup,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    @property
    def process(self) -> psutil.Process:
        return psutil.Process(self.proc.pid)

    def next_event(self, timeout_s: float) -> tuple[str, Any]:
        try:
            line = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            raise TimeoutError(f"the load generator said nothing for {timeout_s:.0f} s") from None
        if line is None:
            self.proc.wait(timeout=10)
            raise RuntimeError(f"the load generator exited with {self.proc.returncode} before its result")
        kind, _, rest = line.partition(" ")
        try:
            return kind, json.loads(rest) if rest else None
        except json.JSONDecodeError:
            return kind, rest

    def run(self, timeout_s: float, on_event: Callable[[str, Any], None] | None = None) -> dict[str, Any]:
        """Pass events to ``on_event`` until the ``RESULT`` arrives (within ``timeout_s`` overall)."""
        deadline = time.monotonic() + timeout_s
        while True:
            kind, payload = self.next_event(max(0.1, deadline - time.monotonic()))
            if kind == "RESULT":
                self.proc.wait(timeout=30)
                return dict(payload)
            if on_event is not None:
                on_event(kind, payload)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        _stop(self.proc, 5.0)


def postgres_processes(port: int) -> list[psutil.Process]:
    """The postmaster listening on ``port`` and all its children (the backends doing the work)."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            master = psutil.Process(conn.pid)
            return [master, *master.children(recursive=True)]
    return []
