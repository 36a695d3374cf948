"""``signoff mcp`` as an agent meets it: a real MCP client session over stdio with the server as a subprocess,
talking to a live signoff server while the test decides as a reviewer through the API."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from tests.conftest import Live
from tests.test_client import decide, fetch, pending

ROOT = Path(__file__).resolve().parent.parent
SIGNOFF = Path(sys.executable).with_name("signoff")


@asynccontextmanager
async def mcp_session(live: Live) -> AsyncIterator[ClientSession]:
    """``signoff mcp`` started the way an agent's MCP configuration starts it: the console script over stdio."""
    params = StdioServerParameters(command=str(SIGNOFF), args=["mcp"], cwd=str(ROOT),
                                   env={"SIGNOFF_URL": live.url, "SIGNOFF_TOKEN": live.agent_token,
                                        "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


def text_of(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


async def ask_and_decide(live: Live, session: ClientSession, arguments: dict[str, Any],
                         decision: str | None, **body: Any) -> CallToolResult:
    """Call ``request_approval``; while it blocks, find the request and decide it (None: let it expire)."""
    call = asyncio.create_task(session.call_tool("request_approval", arguments))
    if decision is not None:
        [req] = await pending(live, 1, within=20.0)
        assert req["action"] == {"tool": arguments["tool"], "args": arguments["args"]}
        await decide(live, req["id"], decision, **body)
    result = await asyncio.wait_for(call, 30)
    assert isinstance(result, CallToolResult)
    assert not result.is_error, text_of(result)
    return result


async def test_request_approval_answers_approved_rejected_modified_and_expired(live_sqlite: Live) -> None:
    live = live_sqlite
    email = {"to": "dana@customer.com", "subject": "Your refund", "body": "Hi Dana"}
    async with mcp_session(live) as session:
        approved = await ask_and_decide(live, session, {
            "tool": "send_email", "args": email, "risk": "high", "labels": ["needs-human-review"],
            "context": {"summary": "Refund confirmation", "user_request": "tell Dana"}}, "approve")
        out = approved.structured_content
        assert out is not None
        assert out["status"] == "approved"
        assert out["final_args"] == email
        assert out["decided_by"] == {"id": "U0DANA", "name": "Dana", "via": "api"}
        assert text_of(approved).startswith("Approved by Dana")
        assert "run send_email with these args" in text_of(approved)
        stored = await fetch(live, out["request_id"])
        assert stored["risk"] == "high" and stored["labels"] == ["needs-human-review"]
        assert stored["context"]["summary"] == "Refund confirmation"

        rejected = await ask_and_decide(live, session, {"tool": "send_email", "args": email}, "reject",
                                        feedback="Say the refund takes 5 days")
        out = rejected.structured_content
        assert out is not None
        assert (out["status"], out["feedback"], out["final_args"]) == ("rejected", "Say the refund takes 5 days", None)
        assert text_of(rejected).startswith("Rejected by Dana")
        assert "Say the refund takes 5 days — do not run send_email" in text_of(rejected)

        edited_args = {**email, "subject": "Your refund is on its way"}
        modified = await ask_and_decide(live, session, {"tool": "send_email", "args": email}, "edit",
                                        args=edited_args)
        out = modified.structured_content
        assert out is not None
        assert (out["status"], out["final_args"]) == ("modified", edited_args)
        assert "edited args" in text_of(modified) and "Your refund is on its way" in text_of(modified)

        expired = await ask_and_decide(live, session, {"tool": "send_email", "args": email, "timeout_s": 1}, None)
        out = expired.structured_content
        assert out is not None
        assert (out["status"], out["final_args"]) == ("expired", None)
        assert "do not run it" in text_of(expired)


async def test_lists_its_tools_and_reads_what_waits(live_sqlite: Live) -> None:
    live = live_sqlite
    waiting = await live.submit({"action": {"tool": "issue_refund", "args": {"amount": 40}}, "labels": ["finance"],
                                 "context": {"summary": "Refund order 1234"}})
    await live.submit({"action": {"tool": "send_email", "args": {"to": "x@y.com"}}})
    async with mcp_session(live) as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        listed = await session.call_tool("list_pending", {"label": "finance"})
        got = await session.call_tool("get_request", {"id": waiting["id"]})
        missing = await session.call_tool("get_request", {"id": "req_doesnotexist"})
    assert set(tools) == {"request_approval", "list_pending", "get_request"}
    ask = tools["request_approval"]
    assert set(ask.input_schema["required"]) == {"tool", "args"}
    assert {"context", "risk", "labels", "timeout_s"} <= set(ask.input_schema["properties"])
    assert ask.output_schema is not None
    assert set(ask.output_schema["required"]) == {"status", "final_args", "feedback", "decided_by", "request_id"}

    assert isinstance(listed, CallToolResult) and listed.structured_content is not None
    [item] = listed.structured_content["requests"]
    assert (item["id"], item["tool"], item["args"], item["summary"]) == (
        waiting["id"], "issue_refund", {"amount": 40}, "Refund order 1234")
    assert isinstance(got, CallToolResult) and got.structured_content is not None
    assert got.structured_content["status"] == "pending"
    assert got.structured_content["action"] == {"tool": "issue_refund", "args": {"amount": 40}}
    assert isinstance(missing, CallToolResult) and missing.is_error
    assert "404" in text_of(missing)


def test_the_client_and_the_cli_import_no_agent_framework() -> None:
    """``import signoff`` (and the ``signoff`` command line) stay light: the frameworks load only with their
    integration module."""
    code = ("import sys, signoff, signoff.integrations, bot.cli; "
            "print(sorted(m for m in ('mcp', 'agents', 'langgraph', 'langchain_core', 'openai') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_streamable_http_transport_serves_the_same_tools(live_sqlite: Live) -> None:
    live = live_sqlite
    waiting = await live.submit({"action": {"tool": "deploy", "args": {"service": "api"}}})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SIGNOFF_URL": live.url, "SIGNOFF_TOKEN": live.agent_token}
    server = await asyncio.create_subprocess_exec(str(SIGNOFF), "mcp", "--http", "--port", str(port), cwd=ROOT,
                                                  env=env, stderr=asyncio.subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        for _ in range(300):  # until it listens
            try:
                _, probe = await asyncio.open_connection("127.0.0.1", port)
                probe.close()
                break
            except OSError:
                assert server.returncode is None, "signoff mcp --http exited"
                await asyncio.sleep(0.05)
        async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            names = {t.name for t in (await session.list_tools()).tools}
            got = await session.call_tool("get_request", {"id": waiting["id"]})
    finally:
        server.terminate()
        await server.wait()
    assert names == {"request_approval", "list_pending", "get_request"}
    assert isinstance(got, CallToolResult) and got.structured_content is not None
    assert got.structured_content["action"] == {"tool": "deploy", "args": {"service": "api"}}
