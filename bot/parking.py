"""Agents parked on ``GET /v1/requests/{id}/wait``, held as bare sockets.

A wait that aiohttp keeps open costs its request handler, two tasks, the parsed request with its headers and
a stack of coroutine frames: about 14 KB, so 10,000 waiting agents would take 140 MB. Once a wait has been
authorised and its request found pending, the connection is taken over instead: the socket is duplicated and
aiohttp lets go of its own copy without a byte on the wire. What stays is the socket's number in one selector
that watches every parked socket for a hang-up, a place in one deadline heap, and the ticket the decision
wakes: under a kilobyte. The answer is the JSON the handler would have sent, written straight to the socket
with ``Connection: close`` (the agent's next call opens a new connection, which costs nothing next to a long
poll).

Only plain TCP connections with nothing else buffered are taken over; HEAD, TLS and pipelined requests, and
servers without a socket, wait in the handler as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import heapq
import logging
import os
import selectors
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE

from bot.service import ApprovalService, WaitTicket

log = logging.getLogger("signoff.parking")

Answer = Callable[[WaitTicket], Awaitable[web.Response]]

# One selector watches every parked socket, and the event loop watches the selector: it needs a descriptor
# (epoll, kqueue, /dev/poll; not plain select()).
_CAN_WATCH = hasattr(selectors.DefaultSelector, "fileno")
SEND_TIMEOUT_S = 30.0


class CountedLater:
    """Marks a response whose status is counted when the answer is really sent (a parked wait's)."""


def response_bytes(resp: web.Response, version: tuple[int, int]) -> bytes:
    """``resp`` as the bytes of an HTTP/1.x response that closes the connection after it."""
    body = resp.body
    assert isinstance(body, bytes)
    lines = [f"HTTP/{version[0]}.{version[1]} {resp.status} {resp.reason}"]
    lines += [f"{k}: {v}" for k, v in resp.headers.items() if k.lower() not in ("content-length", "connection")]
    lines += [f"Content-Length: {len(body)}", f"Date: {email.utils.formatdate(usegmt=True)}",
              f"Server: {SERVER_SOFTWARE}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


class _Parked:
    """One parked wait: the socket's number, the ticket, how to answer it, and the HTTP version to answer in.
    Called when the ticket's future is done (a decision)."""

    __slots__ = ("answer", "fd", "parking", "ticket", "version")

    def __init__(self, parking: ParkedWaits, fd: int, ticket: WaitTicket, answer: Answer,
                 version: tuple[int, int]) -> None:
        self.parking = parking
        self.fd = fd
        self.ticket = ticket
        self.answer = answer
        self.version = version

    def __call__(self, _fut: object) -> None:
        self.parking._wake(self)


class ParkedWaits:
    """The waits taken over from aiohttp, until each is answered or its agent hangs up."""

    def __init__(self, service: ApprovalService) -> None:
        self.service = service
        self._parked: dict[int, _Parked] = {}  # by socket number
        self._selector: selectors.DefaultSelector | None = None
        # One entry per parked wait, plus those of waits answered before their deadline (dropped lazily).
        self._deadlines: list[tuple[float, int, _Parked]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._seq = 0
        self._answering: set[asyncio.Task[None]] = set()
        self.closing = False

    def __len__(self) -> int:
        return len(self._parked)

    # --- taking a connection over --------------------------------------------------------------------------

    def park(self, request: web.Request, ticket: WaitTicket, answer: Answer) -> web.StreamResponse | None:
        """Take ``request``'s connection over and return the (empty) response for aiohttp to finish with, or
        None where the connection cannot be taken over (the caller then waits in the handler). ``answer``
        makes the HTTP response once the ticket is woken or at its deadline, and never raises."""
        transport = request.transport
        if (not _CAN_WATCH or self.closing or request.method != "GET" or transport is None or transport.is_closing()
                or transport.get_extra_info("sslcontext") is not None):
            return None
        sock = transport.get_extra_info("socket")
        if sock is None or sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        proto = request.protocol
        if getattr(proto, "_messages", None) or getattr(proto, "_message_tail", None):
            return None  # a pipelined request is already buffered behind this one: keep the connection in aiohttp
        transport.pause_reading()
        fd = os.dup(sock.fileno())  # shares the open connection (and its O_NONBLOCK) with aiohttp's socket
        try:
            self._watch(_Parked(self, fd, ticket, answer, (request.version.major, request.version.minor)))
        except BaseException:
            os.close(fd)
            transport.resume_reading()
            raise
        # Done in the handler, with no await after it, so no cancellation can come between: aiohttp closes its
        # copy of the socket, ours keeps the connection open, and the response below writes nothing.
        proto.force_close()
        return _Detached()

    def _watch(self, parked: _Parked) -> None:
        loop = asyncio.get_running_loop()
        if self._selector is None:
            self._selector = selectors.DefaultSelector()
            loop.add_reader(self._selector.fileno(), self._on_readable)
        self._selector.register(parked.fd, selectors.EVENT_READ, parked)
        self._parked[parked.fd] = parked
        ticket = parked.ticket
        self._seq += 1
        heapq.heappush(self._deadlines, (ticket.deadline, self._seq, parked))
        if self._deadlines[0][2] is parked:
            self._arm(loop)
        ticket.fut.add_done_callback(parked)

    # --- waking -----------------------------------------------------------------------------------------------

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._deadlines:
            self._timer = loop.call_at(self._deadlines[0][0], self._on_deadline)

    def _on_deadline(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, parked = heapq.heappop(self._deadlines)
            self._wake(parked)  # a no-op for a wait already answered
        self._arm(loop)

    def _wake(self, parked: _Parked, resp: web.Response | None = None) -> None:
        """Answer now (with ``resp``, or the ticket's answer): the decision came, the deadline passed, or the
        server is stopping."""
        if self._parked.get(parked.fd) is not parked:
            return  # already answered, or its agent hung up
        self._forget(parked)
        task = asyncio.get_running_loop().create_task(self._answer(parked, resp))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    def _forget(self, parked: _Parked) -> None:
        """Stop watching a wait (being answered, or its agent gone); the socket stays open."""
        del self._parked[parked.fd]
        if self._selector is not None:
            self._selector.unregister(parked.fd)
        self.service.end_wait(parked.ticket)
        stale = len(self._deadlines) - len(self._parked)
        if stale > 64 and stale > len(self._deadlines) // 2:
            # Most of the heap is answered waits: rebuild it from the parked ones so it holds no old tickets.
            self._deadlines = [e for e in self._deadlines if self._parked.get(e[2].fd) is e[2]]
            heapq.heapify(self._deadlines)

    async def _answer(self, parked: _Parked, resp: web.Response | None) -> None:
        sock = socket.socket(fileno=parked.fd)
        try:
            sock.setblocking(False)
            data = response_bytes(resp or await parked.answer(parked.ticket), parked.version)
            async with asyncio.timeout(SEND_TIMEOUT_S):  # an agent that stopped reading is not waited on forever
                await asyncio.get_running_loop().sock_sendall(sock, data)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
        except (OSError, TimeoutError):
            pass  # the agent went away just now (it calls again), or stopped reading
        finally:
            sock.close()

    # --- hang-ups ---------------------------------------------------------------------------------------------

    def _on_readable(self) -> None:
        assert self._selector is not None
        for key, _ in self._selector.select(0):
            parked: _Parked = key.data
            try:
                data = os.read(parked.fd, 65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:  # the agent hung up: nobody to answer
                self._forget(parked)
                os.close(parked.fd)
            # Bytes of a request pipelined behind the wait are dropped: the answer closes the connection,
            # which tells the client to send that request again on a new one.

    # --- shutdown -----------------------------------------------------------------------------------------

    async def close(self, farewell: web.Response, timeout_s: float = 3.0) -> None:
        """On shutdown: answer every parked wait with ``farewell`` (a 503 that asks the agent to call again, on
        another replica or on this one once it is back) rather than drop its connection, and stop parking."""
        self.closing = True
        for parked in list(self._parked.values()):
            self._wake(parked, farewell)
        if self._answering:
            await asyncio.wait(set(self._answering), timeout=timeout_s)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._selector is not None:
            asyncio.get_running_loop().remove_reader(self._selector.fileno())
            self._selector.close()
            self._selector = None


class _Detached(web.StreamResponse, CountedLater):
    """What aiohttp finishes a parked wait with: nothing goes on the wire (the connection is no longer its)."""

    def __init__(self) -> None:
        super().__init__(status=200)

    async def prepare(self, request: web.BaseRequest) -> Any:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


__all__ = ["CountedLater", "ParkedWaits", "response_bytes"]
