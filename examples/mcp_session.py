"""An MCP client session with ``signoff mcp``: what any MCP-capable agent does before a risky action.

It starts ``signoff mcp`` over stdio (as an agent's MCP configuration would), lists its tools, asks
``request_approval`` about a deploy, and then does what the answer says. No API key and no network besides
signoff. Start a signoff server, then:

    export SIGNOFF_TOKEN=$(signoff tokens create mcp-agent --role agent | tail -1)
    python examples/mcp_session.py

and decide in Slack or with ``signoff approvals ...``. Reads SIGNOFF_URL (default http://127.0.0.1:3000) and
SIGNOFF_TOKEN and hands them to the server it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
from pathlib import Path

from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.types import TextContent


def signoff_command() -> list[str]:
    """The ``signoff`` console script of this environment (else the one on PATH)."""
    beside = Path(sys.executable).with_name("signoff")
    found = str(beside) if beside.exists() else shutil.which("signoff")
    if found is None:
        raise SystemExit("signoff is not installed here: pip install 'signoff[mcp]'")
    return [found, "mcp"]


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--service", default="billing-api")
    p.add_argument("--version", default="2.4.1")
    args = p.parse_args()
    command, *cmd_args = signoff_command()
    env = {k: os.environ[k] for k in ("SIGNOFF_URL", "SIGNOFF_TOKEN") if k in os.environ}
    server = StdioServerParameters(command=command, args=cmd_args, env=env)
    async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        tools = await session.list_tools()
        print(f"mcp: signoff offers {', '.join(t.name for t in tools.tools)}", flush=True)

        deploy = {"service": args.service, "version": args.version, "environment": "production"}
        print(f"agent: asking before deploy({deploy})", flush=True)
        result = await session.call_tool("request_approval", {
            "tool": "deploy", "args": deploy, "risk": "high", "labels": ["needs-human-review"],
            "context": {"summary": f"Deploy {args.service} {args.version} to production",
                        "user_request": "Ship the billing fix today"}})
        said = " ".join(c.text for c in result.content if isinstance(c, TextContent))
        print(f"signoff: {said}", flush=True)
        if result.is_error or result.structured_content is None:
            raise SystemExit(1)
        outcome = result.structured_content
        if outcome["status"] in ("approved", "modified"):
            print(f"agent: deploying with {json.dumps(outcome['final_args'], sort_keys=True)}", flush=True)
        else:
            print(f"agent: not deploying ({outcome['status']})", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
