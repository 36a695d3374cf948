"""Run the ``signoff`` command line and ``signoff serve`` as real subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from tests.support.pg import free_port


def cli_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a CLI or server process: the given database, no Slack, no stray settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SIGNOFF_", "SLACK_"))}
    env.update(SIGNOFF_DATABASE_URL=database_url, SIGNOFF_LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1", **extra)
    return env


def run_cli(env: Mapping[str, str], *args: str, cwd: Path | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], env=dict(env), cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


class Server:
    """``signoff serve`` on a free loopback port; ``kill()`` sends SIGKILL, ``stop()`` SIGTERM."""

    def __init__(self, env: Mapping[str, str], *, cwd: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.env = {**env, "SIGNOFF_HOST": "127.0.0.1", "SIGNOFF_PORT": str(self.port)}
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = cwd / f"serve-{self.port}-{time.monotonic_ns()}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, ready_within_s: float = 60) -> Server:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve"], env=self.env, cwd=self.cwd,
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + ready_within_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"signoff serve exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"signoff serve did not become ready:\n{self.log.read_text()}")
            time.sleep(0.1)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        return None if self.proc is None else self.proc.returncode
