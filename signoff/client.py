"""The blocking client: ``Signoff``, its ``requires_approval`` decorator and ``batch``."""

from __future__ import annotations

import builtins
import dataclasses
import functools
import inspect
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast

from signoff._batch import batch_bodies, batch_item, next_poll, wait_params
from signoff._gate import (
    WITHDRAWN,
    ContextArg,
    Gate,
    GateOptions,
    describe_error,
    describe_return,
    resolve_mode,
)
from signoff._http import Endpoint, Retry, SyncTransport, as_retry
from signoff._wire import list_params, request_path, submit_body
from signoff.decision import Decision
from signoff.handle import LONG_POLL_S, Page, RequestHandle

log = logging.getLogger("signoff.client")

P = ParamSpec("P")
R = TypeVar("R")


class Signoff:
    """Submit actions for human sign-off and wait for the decision.

    ``url`` and ``token`` default to ``SIGNOFF_URL`` (else http://127.0.0.1:3000) and ``SIGNOFF_TOKEN``;
    ``mode`` to ``SIGNOFF_MODE`` (``off`` makes the decorator run functions without asking anyone).
    ``timeout`` bounds each HTTP call (a long poll gets that much on top of its own wait); ``retries`` is a
    count or a ``Retry``.
    """

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 10.0,
                 retries: int | Retry = 4, mode: str | None = None) -> None:
        self.endpoint = Endpoint.resolve(url, token)
        self.mode = resolve_mode(mode)
        self._t = SyncTransport(self.endpoint, timeout=timeout, retry=as_retry(retries))

    @property
    def url(self) -> str:
        return self.endpoint.url

    def __repr__(self) -> str:
        return f"Signoff(url={self.url!r}, mode={self.mode!r})"

    def close(self) -> None:
        self._t.close()

    def __enter__(self) -> Signoff:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        tool: str,
        args: Mapping[str, Any],
        *,
        context: Mapping[str, Any] | str | None = None,
        risk: str = "medium",
        labels: Sequence[str] | None = None,
        timeout_s: int | None = None,
        channel: str | None = None,
        reviewers: Sequence[str] | None = None,
        required_approvals: int | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> RequestHandle:
        """Submit an action; returns at once with a handle (``.wait()`` blocks for the decision)."""
        body = submit_body(tool, args, context=context, risk=risk, labels=labels, timeout_s=timeout_s,
                           channel=channel, reviewers=reviewers, required_approvals=required_approvals,
                           callback_url=callback_url, idempotency_key=idempotency_key)
        return RequestHandle(self._t, self._t.call("POST", "/v1/requests", body=body))

    def get(self, request_id: str) -> RequestHandle:
        return RequestHandle(self._t, self._t.call("GET", request_path(request_id)))

    def cancel(self, request_id: str, reason: str | None = None) -> RequestHandle:
        """Withdraw a pending request (cancelling one that is already cancelled is not an error)."""
        return RequestHandle(self._t, {"id": request_id, "status": "pending"}).cancel(reason)

    def report_result(self, request_id: str, ok: bool, detail: str | None = None) -> RequestHandle:
        return RequestHandle(self._t, {"id": request_id, "status": "approved"}).report_result(ok, detail)

    def batch(self, **shared: Any) -> Batch:
        """Several requests waited for together; ``shared`` fields (context, risk, labels, channel, reviewers,
        required_approvals, timeout_s, callback_url) apply to the actions queued with ``Batch.add``."""
        return Batch(self, **shared)

    def requires_approval(
        self,
        *,
        risk: str = "medium",
        labels: Sequence[str] | None = None,
        timeout_s: int | None = None,
        tool: str | None = None,
        context: ContextArg = None,
        channel: str | None = None,
        reviewers: Sequence[str] | None = None,
        required_approvals: int | None = None,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Gate a function: each call is submitted (its arguments by name), blocks until decided, then
        runs with the original arguments (approved) or the reviewer's edited ones (modified), or raises
        ``ActionRejected`` / ``ApprovalExpired`` / ``ApprovalCancelled``. The outcome is reported back."""
        options = GateOptions(risk=risk, labels=labels, timeout_s=timeout_s, tool=tool, context=context,
                              channel=channel, reviewers=reviewers, required_approvals=required_approvals)

        def decorate(fn: Callable[P, R]) -> Callable[P, R]:
            if inspect.iscoroutinefunction(fn):
                raise TypeError(f"{fn.__name__} is async: gate it with AsyncSignoff().requires_approval")
            gate = Gate(fn, options)
            run = cast(Callable[..., R], fn)

            @functools.wraps(fn)
            def gated(*args: P.args, **kwargs: P.kwargs) -> R:
                if self.mode == "off":
                    gate.warn_bypassed()
                    return fn(*args, **kwargs)
                call = gate.bind(args, kwargs)
                handle = self.request(gate.tool, call.submitted, context=call.context(),
                                      **options.submit_kwargs())
                try:
                    decision = handle.wait()
                except KeyboardInterrupt:
                    self._withdraw_quietly(handle)
                    raise
                try:
                    if decision.modified and decision.final_args is not None:
                        new_args, new_kwargs = call.edited_call(decision.final_args)
                        result = run(*new_args, **new_kwargs)
                    else:
                        result = fn(*args, **kwargs)
                except Exception as e:
                    self._report_quietly(handle, False, describe_error(e))
                    raise
                self._report_quietly(handle, True, describe_return(result))
                return result

            return gated

        return decorate

    def _withdraw_quietly(self, handle: RequestHandle) -> None:
        """Nobody will run the action any more, so reviewers should not be asked to approve it."""
        try:
            handle.cancel(WITHDRAWN, retry=dataclasses.replace(self._t.retry, attempts=1))
        except Exception as e:
            log.warning("could not withdraw %s after the wait was interrupted: %s", handle.id, e)

    def _report_quietly(self, handle: RequestHandle, ok: bool, detail: str) -> None:
        """Best effort: the function's own result or exception always wins over a failed report."""
        try:
            handle.report_result(ok, detail, retry=dataclasses.replace(self._t.retry, attempts=1))
        except Exception as e:
            log.warning("could not report the result of %s to signoff: %s", handle.id, e)

    # Defined last: inside the class body, later annotations would otherwise see this method as ``list``.
    def list(self, *, status: str | None = None, label: str | None = None, tool: str | None = None,
             agent: str | None = None, risk: str | None = None, channel: str | None = None,
             limit: int | None = None, cursor: str | None = None) -> Page[RequestHandle]:
        """Requests this token may see, newest first, one page at a time."""
        params = list_params({"status": status, "label": label, "tool": tool, "agent": agent, "risk": risk,
                              "channel": channel}, limit, cursor)
        out = self._t.call("GET", "/v1/requests", params=params)
        return Page([RequestHandle(self._t, r) for r in out["requests"]], out.get("next_cursor"))


class Batch:
    """Several requests waited for together::

        with gate.batch(labels=["needs-human-review"]) as b:
            b.add("send_email", {...})
            b.add("issue_refund", {...})
            decisions = b.wait_all()

    ``add`` queues an action; the queued actions go to the server as one batch (``POST /v1/batches``, up to
    100 per batch) when ``submit`` or ``wait_all`` is called, and reviewers see them on one Slack card, each
    decidable on its own. ``request`` submits one action at once instead (its handle has an id straight
    away). ``wait_all`` returns every decision in the order the actions were submitted (rejected ones
    included: check ``Decision.approved`` or call ``Decision.check()``), long-polling each server batch as a
    whole. Leaving the block with an exception cancels the requests still pending.
    """

    def __init__(self, gate: Signoff, **shared: Any) -> None:
        self._gate = gate
        self._shared = shared
        self._queued: builtins.list[dict[str, Any]] = []
        self._batches: dict[str, builtins.list[RequestHandle]] = {}
        self.handles: builtins.list[RequestHandle] = []

    def request(self, tool: str, args: Mapping[str, Any], **kwargs: Any) -> RequestHandle:
        handle = self._gate.request(tool, args, **kwargs)
        self.handles.append(handle)
        return handle

    def add(self, tool: str, args: Mapping[str, Any], **fields: Any) -> None:
        """Queue an action for the next ``submit`` (fields left out take the batch's shared values)."""
        self._queued.append(batch_item(tool, args, fields))

    def submit(self) -> builtins.list[RequestHandle]:
        """Submit the queued actions as server batches; returns their handles (also added to ``handles``)."""
        queued, self._queued = self._queued, []
        handles: builtins.list[RequestHandle] = []
        for body in batch_bodies(queued, self._shared):
            out = self._gate._t.call("POST", "/v1/batches", body=body)
            batch = [RequestHandle(self._gate._t, r) for r in out["requests"]]
            self._batches[out["id"]] = batch
            handles += batch
        self.handles += handles
        return handles

    def wait_all(self, timeout: float | None = None) -> builtins.list[Decision]:
        self.submit()
        end = None if timeout is None else time.monotonic() + timeout
        for batch_id, handles in self._batches.items():
            while not all(h.done for h in handles):
                poll = next_poll(end, LONG_POLL_S)
                if poll is None:
                    break  # out of time: the handles' own wait below reports it
                out = self._gate._t.call("GET", f"/v1/batches/{batch_id}/wait", params=wait_params(poll),
                                         http_timeout=poll + self._gate._t.timeout)
                latest = {r["id"]: r for r in out["requests"]}
                for h in handles:
                    h.data = latest.get(h.id, h.data)
        return [h.wait(None if end is None else max(0.0, end - time.monotonic()), check=False)
                for h in self.handles]

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            return
        for handle in self.handles:
            if not handle.done:
                try:
                    handle.cancel("the agent abandoned the batch after an error")
                except Exception as e:
                    log.warning("could not cancel %s after the batch failed: %s", handle.id, e)
