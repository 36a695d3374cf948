"""Handles on submitted requests: read, long-poll until decided, cancel, report the result."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from signoff._http import AsyncTransport, Retry, SyncTransport
from signoff._wire import request_path
from signoff.decision import TERMINAL, Decision
from signoff.errors import ConflictError, WaitTimedOut

# The server holds a long poll for at most 60 s; staying under it also keeps clear of the 60 s idle
# timeout many proxies and load balancers apply.
LONG_POLL_S = 50.0

H = TypeVar("H")


class _Deadline:
    def __init__(self, timeout: float | None) -> None:
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 or None, got {timeout}")
        self._end = None if timeout is None else time.monotonic() + timeout
        self.timeout = timeout

    def next_poll(self, polled: bool, request_id: str) -> float:
        """Seconds for the next long poll; raise ``WaitTimedOut`` once the overall timeout is used up."""
        if self._end is None:
            return LONG_POLL_S
        remaining = self._end - time.monotonic()
        if remaining <= 0 and polled:
            raise WaitTimedOut(f"request {request_id} is still pending after waiting {self.timeout:g} s",
                               request_id=request_id)
        return max(0.0, min(LONG_POLL_S, remaining))


def _wait_params(poll: float) -> dict[str, str]:
    return {"timeout_s": f"{poll:.3f}".rstrip("0").rstrip(".")}


def _already_cancelled(data: dict[str, Any]) -> bool:
    return data.get("status") == "cancelled"


def _already_reported(data: dict[str, Any], ok: bool) -> bool:
    """After a retried report whose first attempt did land, the 409 is our own earlier success."""
    result = data.get("result")
    return isinstance(result, dict) and result.get("ok") is ok


class _HandleBase:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def status(self) -> str:
        return str(self.data["status"])

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def decision(self) -> Decision | None:
        """The decision if the last known state is terminal, else None (no I/O)."""
        return Decision.from_request(self.data) if self.done else None

    def __repr__(self) -> str:
        tool = (self.data.get("action") or {}).get("tool")
        return f"<{type(self).__name__} {self.id} {tool} {self.status}>"


class RequestHandle(_HandleBase):
    def __init__(self, transport: SyncTransport, data: dict[str, Any]) -> None:
        super().__init__(data)
        self._t = transport

    def refresh(self) -> RequestHandle:
        self.data = self._t.call("GET", request_path(self.id))
        return self

    def wait(self, timeout: float | None = None, *, check: bool = True) -> Decision:
        """Block until decided (or ``timeout`` seconds pass: ``WaitTimedOut``). With ``check`` (the
        default) a rejection, expiry or cancellation raises ``ActionRejected`` / ``ApprovalExpired`` /
        ``ApprovalCancelled``; without it the decision is returned whatever it is."""
        deadline, polled = _Deadline(timeout), False
        while not self.done:
            poll = deadline.next_poll(polled, self.id)
            self.data = self._t.call("GET", request_path(self.id, "wait"), params=_wait_params(poll),
                                     http_timeout=poll + self._t.timeout)
            polled = True
        decision = Decision.from_request(self.data)
        return decision.check() if check else decision

    def cancel(self, reason: str | None = None, *, retry: Retry | None = None) -> RequestHandle:
        """Withdraw the request while it is pending (cancelling a cancelled request is not an error)."""
        body = {"reason": reason} if reason else {}
        try:
            self.data = self._t.call("POST", request_path(self.id, "cancel"), body=body, retry=retry)
        except ConflictError:
            if not _already_cancelled(self.refresh().data):
                raise
        return self

    def report_result(self, ok: bool, detail: str | None = None, *,
                      retry: Retry | None = None) -> RequestHandle:
        """Tell the reviewers what happened when the approved action ran (shown on the Slack card)."""
        try:
            self.data = self._t.call("POST", request_path(self.id, "result"),
                                     body={"ok": ok, "detail": detail}, retry=retry)
        except ConflictError:
            if not _already_reported(self.refresh().data, ok):
                raise
        return self


class AsyncRequestHandle(_HandleBase):
    def __init__(self, transport: AsyncTransport, data: dict[str, Any]) -> None:
        super().__init__(data)
        self._t = transport

    async def refresh(self) -> AsyncRequestHandle:
        self.data = await self._t.call("GET", request_path(self.id))
        return self

    # The same signature as the sync twin: ``timeout`` spans many long polls, not one awaitable.
    async def wait(self, timeout: float | None = None, *, check: bool = True) -> Decision:
        """As ``RequestHandle.wait``, without blocking the event loop."""
        deadline, polled = _Deadline(timeout), False
        while not self.done:
            poll = deadline.next_poll(polled, self.id)
            self.data = await self._t.call("GET", request_path(self.id, "wait"), params=_wait_params(poll),
                                           http_timeout=poll + self._t.timeout)
            polled = True
        decision = Decision.from_request(self.data)
        return decision.check() if check else decision

    async def cancel(self, reason: str | None = None, *, retry: Retry | None = None) -> AsyncRequestHandle:
        body = {"reason": reason} if reason else {}
        try:
            self.data = await self._t.call("POST", request_path(self.id, "cancel"), body=body, retry=retry)
        except ConflictError:
            if not _already_cancelled((await self.refresh()).data):
                raise
        return self

    async def report_result(self, ok: bool, detail: str | None = None, *,
                            retry: Retry | None = None) -> AsyncRequestHandle:
        try:
            self.data = await self._t.call("POST", request_path(self.id, "result"),
                                           body={"ok": ok, "detail": detail}, retry=retry)
        except ConflictError:
            if not _already_reported((await self.refresh()).data, ok):
                raise
        return self


@dataclass(frozen=True)
class Page(Generic[H]):
    """One page of ``list``: newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""

    requests: list[H]
    next_cursor: str | None
