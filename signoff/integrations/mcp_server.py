"""``signoff mcp``: an MCP server that lets any MCP-capable agent ask a human before it acts.

It is a client of a running signoff server (``SIGNOFF_URL``, default http://127.0.0.1:3000, and an agent token
in ``SIGNOFF_TOKEN``); it stores nothing itself. Tools:

- ``request_approval(tool, args, context?, risk?, labels?, timeout_s?)`` submits the action and blocks until a
  human decides (or the request expires). The result is structured —
  ``{status, final_args, feedback, decided_by, request_id}`` — with a sentence for the model to read: "Approved
  by Dana …: run send_email with these args: …" or "Rejected by Dana …: <feedback> — do not run send_email …".
- ``list_pending(label?, tool?, limit?)``: this token's requests still waiting for a decision.
- ``get_request(id)``: one request as the signoff API returns it.

Transports: stdio (the default, for agents that start the server themselves) and streamable HTTP
(``signoff mcp --http --port 8000``, served at ``/mcp``). Built on the official ``mcp`` SDK, imported only
here: ``pip install 'signoff[mcp]'``.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent
from pydantic import Field
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from signoff.aio import AsyncSignoff
from signoff.decision import Decision
from signoff.errors import SignoffAPIError, SignoffUnavailable, WaitTimedOut
from signoff.integrations._outcome import instruction, outcome_dict

HEARTBEAT_S = 15.0  # progress notifications while a human decides keep clients' request timeouts at bay
DEFAULT_HTTP_PORT = 8000
TOOL_NAME = r"^[A-Za-z0-9_.:-]{1,64}$"
WITHDRAWN = "the MCP client cancelled the tool call before anyone decided"

Risk = Literal["low", "medium", "high", "critical"]
Status = Literal["approved", "modified", "rejected", "expired", "cancelled"]


class DecidedByOut(TypedDict):
    id: str | None
    name: str | None
    via: str | None


class ApprovalOutcome(TypedDict):
    """The decision: run the action with ``final_args`` when approved or modified, otherwise do not run it."""

    status: Status
    final_args: dict[str, Any] | None
    feedback: str | None
    decided_by: DecidedByOut | None
    request_id: str


class PendingRequest(TypedDict):
    id: str
    tool: str
    args: dict[str, Any]
    risk: str
    labels: list[str]
    summary: str | None
    created_at: str | None
    expires_at: str | None


class PendingList(TypedDict):
    requests: list[PendingRequest]
    next_cursor: str | None


class _Backend:
    """The signoff client, opened for the server's lifetime (nothing is connected at import or build time)."""

    def __init__(self, url: str | None, token: str | None) -> None:
        self._url, self._token = url, token
        self._gate: AsyncSignoff | None = None

    @property
    def gate(self) -> AsyncSignoff:
        if self._gate is None:
            raise RuntimeError("the signoff MCP server is not running")
        return self._gate

    @asynccontextmanager
    async def lifespan(self, _server: MCPServer[Any]) -> AsyncIterator[None]:
        self._gate = AsyncSignoff(self._url, self._token)
        try:
            yield
        finally:
            await self._gate.aclose()
            self._gate = None


def _failed(e: Exception) -> ToolError:
    """A signoff error as the tool error the model reads (the tool call fails; the server keeps running)."""
    if isinstance(e, SignoffAPIError):
        return ToolError(f"signoff refused the request ({e.status} {e.code}): {e.message}")
    return ToolError(f"signoff is unreachable: {e}")


def _pending_summary(r: dict[str, Any]) -> PendingRequest:
    action = r.get("action") or {}
    return {"id": r["id"], "tool": action.get("tool", ""), "args": action.get("args") or {},
            "risk": r.get("risk", "medium"), "labels": list(r.get("labels") or []),
            "summary": (r.get("context") or {}).get("summary"), "created_at": r.get("created_at"),
            "expires_at": r.get("expires_at")}


def build_server(url: str | None = None, token: str | None = None, *,
                 heartbeat_s: float = HEARTBEAT_S) -> MCPServer[None]:
    """The MCP server; ``url`` and ``token`` default to ``SIGNOFF_URL`` and ``SIGNOFF_TOKEN``."""
    backend = _Backend(url, token)
    server: MCPServer[None] = MCPServer(
        "signoff",
        instructions=("Before an action that is risky or irreversible (sending email, moving money, deleting data, "
                      "deploying), call request_approval and do exactly what its answer says: run the action only "
                      "when approved, with the final_args it returns, and never when it was rejected, expired or "
                      "cancelled."),
        lifespan=backend.lifespan,
        log_level="WARNING",
    )

    @server.tool(description=(
        "Ask a human to approve an action before you run it. Blocks until a reviewer approves, edits or rejects it "
        "(or it expires). Run the action only if status is approved or modified, and then with final_args."))
    async def request_approval(
        tool: Annotated[str, Field(description="name of the action, e.g. send_email", pattern=TOOL_NAME)],
        args: Annotated[dict[str, Any], Field(description="the arguments you intend to run it with")],
        ctx: Context,
        context: Annotated[dict[str, Any] | str | None, Field(
            description="why: a summary string, or {summary, user_request, reasoning, session_id, links}")] = None,
        risk: Risk = "medium",
        labels: Annotated[list[str] | None, Field(description="e.g. needs-human-review, escalation")] = None,
        timeout_s: Annotated[int | None, Field(ge=1, description="seconds before the request expires")] = None,
    ) -> Annotated[CallToolResult, ApprovalOutcome]:
        try:
            handle = await backend.gate.request(tool, args, context=context, risk=risk, labels=labels,
                                                timeout_s=timeout_s)
        except (SignoffAPIError, SignoffUnavailable) as e:
            raise _failed(e) from e
        started = time.monotonic()
        try:
            while True:
                try:
                    decision: Decision = await handle.wait(heartbeat_s, check=False)
                    break
                except WaitTimedOut:
                    await ctx.report_progress(time.monotonic() - started, None,
                                              f"waiting for a human decision on {handle.id}")
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await _withdraw(handle)
            raise
        except (SignoffAPIError, SignoffUnavailable) as e:
            raise _failed(e) from e
        return CallToolResult(content=[TextContent(type="text", text=instruction(decision))],
                              structured_content=dict(outcome_dict(decision)))

    @server.tool(description="List your requests that are still waiting for a human decision, newest first.")
    async def list_pending(label: str | None = None, tool: str | None = None,
                           limit: Annotated[int, Field(ge=1, le=200)] = 50) -> PendingList:
        try:
            page = await backend.gate.list(status="pending", label=label, tool=tool, limit=limit)
        except (SignoffAPIError, SignoffUnavailable) as e:
            raise _failed(e) from e
        return {"requests": [_pending_summary(h.data) for h in page.requests], "next_cursor": page.next_cursor}

    @server.tool(description="Get one approval request (status, action, decision, final_args) by its id.")
    async def get_request(id: Annotated[str, Field(description="the request id, req_…")]) -> dict[str, Any]:
        try:
            handle = await backend.gate.get(id)
        except ValueError as e:
            raise ToolError(str(e)) from e
        except (SignoffAPIError, SignoffUnavailable) as e:
            raise _failed(e) from e
        return handle.data

    return server


async def _withdraw(handle: Any) -> None:
    try:
        await handle.cancel(WITHDRAWN)
    except Exception:  # best effort: the request then simply expires
        return


async def serve(*, http: bool = False, host: str = "127.0.0.1", port: int = DEFAULT_HTTP_PORT,
                url: str | None = None, token: str | None = None) -> None:
    """Run until the client disconnects (stdio) or the process is stopped (HTTP)."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per long poll drowns what matters
    server = build_server(url, token)
    if http:
        await server.run_streamable_http_async(host=host, port=port)
    else:
        await server.run_stdio_async()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m signoff.integrations.mcp_server``: the same as ``signoff mcp``."""
    p = argparse.ArgumentParser(prog="signoff mcp", description="MCP server for signoff approvals; a client of "
                                "the signoff server at SIGNOFF_URL, authenticated with SIGNOFF_TOKEN.")
    p.add_argument("--http", action="store_true", help="serve streamable HTTP at /mcp instead of stdio")
    p.add_argument("--host", default="127.0.0.1", help="bind address with --http")
    p.add_argument("--port", type=int, default=DEFAULT_HTTP_PORT, help="port with --http")
    args = p.parse_args(argv)
    anyio.run(lambda: serve(http=args.http, host=args.host, port=args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
