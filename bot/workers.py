"""``signoff serve --workers N``: N server processes sharing one port, for PostgreSQL deployments.

Each worker is a full signoff server (API, Slack app, scheduler, outbox delivery), exactly as a replica is:
the kernel spreads connections over them (``SO_REUSEPORT``), PostgreSQL's LISTEN/NOTIFY wakes an agent
waiting on one worker when another records the decision, and outbox leases and scheduler claims keep side
effects single across them (PRODUCT.md §6.8). A Python process runs on one core; this is how one machine's
cores all serve. SQLite is refused: it has one writer, and a decision in one worker would reach an agent
waiting in another only through the one-second re-read.

The parent applies migrations once, starts the workers, forwards SIGTERM/SIGINT to them and waits; if a
worker dies on its own, the parent stops the others and exits with that worker's status, so a supervisor
(systemd, Kubernetes) restarts the whole set. A ``/metrics`` scrape through the shared port reaches one
worker and counts that worker's traffic only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys

from bot.errors import ConfigError
from bot.settings import Settings

log = logging.getLogger("signoff.workers")

STOP_GRACE_S = 15.0


def check(settings: Settings) -> None:
    """Refuse a worker count that cannot work, with the reason."""
    if not 1 <= settings.workers <= 64:
        raise ConfigError(f"--workers: expected a number of processes from 1 to 64, got {settings.workers}")
    if settings.workers == 1:
        return
    if not settings.database_url.startswith(("postgresql", "postgres")):
        raise ConfigError("SIGNOFF_WORKERS / --workers above 1 needs PostgreSQL (SIGNOFF_DATABASE_URL=postgresql://…): "
                          "SQLite has one writer, and an agent waiting in one worker would hear of a decision "
                          "made in another only through the 1 s re-read")
    if settings.port == 0:
        raise ConfigError("SIGNOFF_WORKERS above 1 needs a fixed SIGNOFF_PORT for the workers to share")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


async def run_workers(settings: Settings) -> int:
    """Start the workers (the caller ran ``check`` and the migrations) and supervise them until a signal or a
    death."""
    env = {**os.environ, "SIGNOFF_WORKERS": "1", "SIGNOFF_REUSE_PORT": "1"}
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    procs = [await asyncio.create_subprocess_exec(sys.executable, "-m", "bot.cli", "serve",
                                                  env={**env, "SIGNOFF_WORKER": str(i)}, preexec_fn=preexec)
             for i in range(settings.workers)]
    log.info("started %d workers on port %s (pids %s)", len(procs), settings.port,
             ", ".join(str(p.pid) for p in procs))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    exits = {asyncio.ensure_future(p.wait()): n for n, p in enumerate(procs)}
    stopping = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait([*exits, stopping], return_when=asyncio.FIRST_COMPLETED)
    failed = next((exits[t] for t in done if t in exits), None) if stopping not in done else None
    if failed is not None:
        log.error("worker %d (pid %d) exited with status %s; stopping the others", failed, procs[failed].pid,
                  procs[failed].returncode)
    for p in procs:
        if p.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), STOP_GRACE_S)
    except TimeoutError:
        for p in procs:
            if p.returncode is None:
                log.warning("worker pid %d did not stop within %.0f s; killing it", p.pid, STOP_GRACE_S)
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
        await asyncio.gather(*(p.wait() for p in procs))
    stopping.cancel()
    if failed is not None:
        return procs[failed].returncode or 1
    return 0
