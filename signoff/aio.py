"""The asyncio twin of ``signoff.client``: ``AsyncSignoff``, the decorator for ``async def``, ``AsyncBatch``."""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
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
from signoff._http import AsyncTransport, Endpoint, Retry, as_retry
from signoff._wire import list_params, request_path, submit_body
from signoff.decision import Decision
from signoff.handle import LONG_POLL_S, AsyncRequestHandle, Page

log = logging.getLogger("signoff.client")

P = ParamSpec("P")
R = TypeVar("R")


class AsyncSignoff:
    """``Signoff`` for asyncio: the same arguments and methods, awaited. Use ``async with`` or ``aclose()``."""

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 10.0,
                 retries: int | Retry = 4, mode: str | None = None) -> None:
        self.endpoint = Endpoint.resolve(url, token)
        self.mode = resolve_mode(mode)
        self._t = AsyncTransport(self.endpoint, timeout=timeout, retry=as_retry(retries))

    @property
    def url(self) -> str:
        return self.endpoint.url

    def __repr__(self) -> str:
        return f"AsyncSignoff(url={self.url!r}, mode={self.mode!r})"

    async def aclose(self) -> None:
        await self._t.aclose()

    async def __aenter__(self) -> AsyncSignoff:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def request(
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
    ) -> AsyncRequestHandle:
        body = submit_body(tool, args, context=context, risk=risk, labels=labels, timeout_s=timeout_s,
                           channel=channel, reviewers=reviewers, required_approvals=required_approvals,
                           callback_url=callback_url, idempotency_key=idempotency_key)
        return AsyncRequestHandle(self._t, await self._t.call("POST", "/v1/requests", body=body))

    async def get(self, request_id: str) -> AsyncRequestHandle:
        return AsyncRequestHandle(self._t, await self._t.call("GET", request_path(request_id)))

    async def cancel(self, request_id: str, reason: str | None = None) -> AsyncRequestHandle:
        return await AsyncRequestHandle(self._t, {"id": request_id, "status": "pending"}).cancel(reason)

    async def report_result(self, request_id: str, ok: bool, detail: str | None = None) -> AsyncRequestHandle:
        handle = AsyncRequestHandle(self._t, {"id": request_id, "status": "approved"})
        return await handle.report_result(ok, detail)

    def batch(self, **shared: Any) -> AsyncBatch:
        """As ``Signoff.batch``."""
        return AsyncBatch(self, **shared)

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
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Coroutine[Any, Any, R]]]:
        """As ``Signoff.requires_approval``, for ``async def`` functions."""
        options = GateOptions(risk=risk, labels=labels, timeout_s=timeout_s, tool=tool, context=context,
                              channel=channel, reviewers=reviewers, required_approvals=required_approvals)

        def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
            if not inspect.iscoroutinefunction(fn):
                raise TypeError(f"{getattr(fn, '__name__', fn)} is not async: gate it with "
                                f"Signoff().requires_approval")
            gate = Gate(fn, options)
            run = cast(Callable[..., Awaitable[R]], fn)

            @functools.wraps(fn)
            async def gated(*args: P.args, **kwargs: P.kwargs) -> R:
                if self.mode == "off":
                    gate.warn_bypassed()
                    return await fn(*args, **kwargs)
                call = gate.bind(args, kwargs)
                handle = await self.request(gate.tool, call.submitted, context=call.context(),
                                            **options.submit_kwargs())
                try:
                    decision = await handle.wait()
                except asyncio.CancelledError:
                    await self._withdraw_quietly(handle)
                    raise
                try:
                    if decision.modified and decision.final_args is not None:
                        new_args, new_kwargs = call.edited_call(decision.final_args)
                        result = await run(*new_args, **new_kwargs)
                    else:
                        result = await fn(*args, **kwargs)
                except Exception as e:
                    await self._report_quietly(handle, False, describe_error(e))
                    raise
                await self._report_quietly(handle, True, describe_return(result))
                return result

            return gated

        return decorate

    async def _withdraw_quietly(self, handle: AsyncRequestHandle) -> None:
        """The waiting task was cancelled: nobody will run the action, so take it off the reviewers' queue."""
        try:
            await handle.cancel(WITHDRAWN, retry=dataclasses.replace(self._t.retry, attempts=1))
        except Exception as e:
            log.warning("could not withdraw %s after the wait was cancelled: %s", handle.id, e)

    async def _report_quietly(self, handle: AsyncRequestHandle, ok: bool, detail: str) -> None:
        try:
            await handle.report_result(ok, detail, retry=dataclasses.replace(self._t.retry, attempts=1))
        except Exception as e:
            log.warning("could not report the result of %s to signoff: %s", handle.id, e)

    # Defined last: inside the class body, later annotations would otherwise see this method as ``list``.
    async def list(self, *, status: str | None = None, label: str | None = None, tool: str | None = None,
                   agent: str | None = None, risk: str | None = None, channel: str | None = None,
                   limit: int | None = None, cursor: str | None = None) -> Page[AsyncRequestHandle]:
        params = list_params({"status": status, "label": label, "tool": tool, "agent": agent, "risk": risk,
                              "channel": channel}, limit, cursor)
        out = await self._t.call("GET", "/v1/requests", params=params)
        return Page([AsyncRequestHandle(self._t, r) for r in out["requests"]], out.get("next_cursor"))


class AsyncBatch:
    """``Batch`` for asyncio: ``async with gate.batch() as b: b.add(...)`` (or ``await b.request(...)``);
    ``await b.wait_all()`` submits what was added as server batches and waits for all concurrently."""

    def __init__(self, gate: AsyncSignoff, **shared: Any) -> None:
        self._gate = gate
        self._shared = shared
        self._queued: builtins.list[dict[str, Any]] = []
        self._batches: dict[str, builtins.list[AsyncRequestHandle]] = {}
        self.handles: builtins.list[AsyncRequestHandle] = []

    async def request(self, tool: str, args: Mapping[str, Any], **kwargs: Any) -> AsyncRequestHandle:
        handle = await self._gate.request(tool, args, **kwargs)
        self.handles.append(handle)
        return handle

    def add(self, tool: str, args: Mapping[str, Any], **fields: Any) -> None:
        """Queue an action for the next ``submit`` (fields left out take the batch's shared values)."""
        self._queued.append(batch_item(tool, args, fields))

    async def submit(self) -> builtins.list[AsyncRequestHandle]:
        """Submit the queued actions as server batches; returns their handles (also added to ``handles``)."""
        queued, self._queued = self._queued, []
        handles: builtins.list[AsyncRequestHandle] = []
        for body in batch_bodies(queued, self._shared):
            out = await self._gate._t.call("POST", "/v1/batches", body=body)
            batch = [AsyncRequestHandle(self._gate._t, r) for r in out["requests"]]
            self._batches[out["id"]] = batch
            handles += batch
        self.handles += handles
        return handles

    async def _wait_batch(self, batch_id: str, handles: builtins.list[AsyncRequestHandle],
                          end: float | None) -> None:
        while not all(h.done for h in handles):
            poll = next_poll(end, LONG_POLL_S)
            if poll is None:
                return  # out of time: the handles' own wait reports it
            out = await self._gate._t.call("GET", f"/v1/batches/{batch_id}/wait", params=wait_params(poll),
                                           http_timeout=poll + self._gate._t.timeout)
            latest = {r["id"]: r for r in out["requests"]}
            for h in handles:
                h.data = latest.get(h.id, h.data)

    async def wait_all(self, timeout: float | None = None) -> builtins.list[Decision]:
        await self.submit()
        end = None if timeout is None else time.monotonic() + timeout
        await asyncio.gather(*(self._wait_batch(bid, hs, end) for bid, hs in self._batches.items()))
        if end is not None:
            timeout = max(0.0, end - time.monotonic())
        tasks = [asyncio.ensure_future(h.wait(timeout, check=False)) for h in self.handles]
        try:
            return builtins.list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            raise

    async def __aenter__(self) -> AsyncBatch:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if exc_type is None:
            return
        for handle in self.handles:
            if not handle.done:
                try:
                    await handle.cancel("the agent abandoned the batch after an error")
                except Exception as e:
                    log.warning("could not cancel %s after the batch failed: %s", handle.id, e)
