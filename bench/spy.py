"""``--profile``: sample the server with py-spy during a phase and summarise where its event loop spends time.

py-spy attaches to the running server by pid (no code change, no restart) and writes collapsed stacks; the
summary gives, for the event-loop thread, the inclusive share of samples of signoff's own functions (what
a change in ``bot/`` or ``storage/`` could save) and the hottest leaf functions overall.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

OWN_CODE = re.compile(r"\((bot|storage|handlers)/[^)]*\)$")
EVENT_LOOP_IDLE = re.compile(r"^(EpollSelector|KqueueSelector|SelectSelector)\.select ")


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Recorder:
    """``with Recorder(pid, path):`` records the process until the block ends (stopped with SIGINT)."""

    def __init__(self, pid: int, out: Path, *, rate: int = 200) -> None:
        exe = py_spy()
        if exe is None:
            raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
        self.out = out
        self._cmd = [exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw", "--nolineno",
                     "--threads", "--nonblocking", "--output", str(out)]
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Recorder:
        self._proc = subprocess.Popen(self._cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


@dataclass
class Summary:
    samples: int = 0
    loop_samples: int = 0
    loop_idle: int = 0
    other_threads: Counter[str] = field(default_factory=Counter)
    own: Counter[str] = field(default_factory=Counter)
    leaves: Counter[str] = field(default_factory=Counter)

    def lines(self, top: int = 18) -> list[str]:
        if not self.loop_samples:
            return ["no samples (is py-spy allowed to ptrace the server?)"]
        busy = self.loop_samples - self.loop_idle
        out = [f"event-loop thread: {self.loop_samples} samples, {100 * self.loop_idle / self.loop_samples:.0f}% "
               f"idle in select(); other threads: {sum(self.other_threads.values())} samples "
               f"({', '.join(f'{k} {v}' for k, v in self.other_threads.most_common(3))})",
               "signoff functions, inclusive share of the busy event-loop samples:"]
        out += [f"  {100 * n / busy:5.1f}%  {f}" for f, n in self.own.most_common(top)]
        out.append("hottest leaf functions (self time), share of busy event-loop samples:")
        out += [f"  {100 * n / busy:5.1f}%  {f}" for f, n in self.leaves.most_common(top // 2)]
        return out


def summarise(path: Path) -> Summary:
    s = Summary()
    if not path.exists():
        return s
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        s.samples += n
        thread, frames = frames[0], frames[1:]
        if not frames or not thread.endswith("MainThread"):
            s.other_threads[_thread_kind(frames)] += n
            continue
        s.loop_samples += n
        if EVENT_LOOP_IDLE.match(frames[-1]):
            s.loop_idle += n
            continue
        s.leaves[frames[-1]] += n
        for f in {f for f in frames if OWN_CODE.search(f)}:
            if not f.startswith(("<module>", "main ")):
                s.own[f] += n
    return s


def _thread_kind(frames: list[str]) -> str:
    text = ";".join(frames)
    for name in ("aiosqlite", "asyncpg", "concurrent/futures", "apscheduler"):
        if name in text:
            return name
    return frames[-1] if frames else "?"
