"""Polling a condition in async tests, for effects that land a few loop turns (or a thread hop) later."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def until(probe: Callable[[], T], what: str, timeout: float = 10.0, every: float = 0.01) -> T:
    """The first truthy value of ``probe()``; fails naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(every)
