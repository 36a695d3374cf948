"""Each example in examples/ runs to completion against a live server, as a user would run it: a subprocess
with SIGNOFF_URL and SIGNOFF_TOKEN, while the test decides its request through the API as a reviewer."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import Live
from tests.test_client import decide, fetch, pending

ROOT = Path(__file__).resolve().parent.parent


async def run_example(live: Live, tmp_path: Path, script: str, *args: str, decision: str,
                      **body: Any) -> tuple[str, dict[str, Any]]:
    """Run ``examples/<script>``, decide the one request it submits, and return its output and the request."""
    env = {**os.environ, "SIGNOFF_URL": live.url, "SIGNOFF_TOKEN": live.agent_token}
    proc = await asyncio.create_subprocess_exec(sys.executable, str(ROOT / "examples" / script), *args, cwd=tmp_path,
                                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        [req] = await pending(live, 1, within=60.0)
        await decide(live, req["id"], decision, **body)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    return out.decode(), await fetch(live, req["id"])


async def test_email_agent_sends_the_email_as_the_reviewer_edited_it(live_sqlite: Live, tmp_path: Path) -> None:
    edited = {"to": "dana@customer.com", "subject": "Your $40 refund", "body": "Hi Dana, your refund is done."}
    out, req = await run_example(live_sqlite, tmp_path, "email_agent.py",
                                 "Tell dana@customer.com her refund of $40 went through", decision="edit", args=edited)
    assert req["action"]["args"]["to"] == "dana@customer.com"
    assert req["action"]["args"]["body"] == "Hi Dana,\n\nYour refund of $40 went through.\n\nBest,\nSupport"
    assert (req["risk"], req["labels"]) == ("high", ["needs-human-review"])
    lines = out.splitlines()
    assert lines[0] == "user: Tell dana@customer.com her refund of $40 went through"
    assert f"signoff: waiting for a human to approve, edit or reject {req['id']}" in lines
    assert "send_email: sending to 'dana@customer.com', subject 'Your $40 refund'" in lines
    assert "agent: Here is what happened: [Dana edited the arguments before it ran" in out
    assert req["result"]["ok"] is True


async def test_refund_agent_pauses_then_refunds_what_the_reviewer_approved(live_sqlite: Live,
                                                                         tmp_path: Path) -> None:
    out, req = await run_example(live_sqlite, tmp_path, "refund_agent_langgraph.py", "Refund $40 on order A-1234",
                                 "--thread", "t-example", decision="edit", args={"order_id": "A-1234", "amount": 25})
    assert req["action"] == {"tool": "issue_refund", "args": {"order_id": "A-1234", "amount": 40.0}}
    assert (req["risk"], req["labels"]) == ("high", ["finance"])
    assert req["context"]["summary"] == "Refund $40.00 on order A-1234"
    assert req["context"]["session_id"] == "t-example"
    assert f"graph paused: issue_refund waits for a human in signoff ({req['id']})" in out
    assert "issue_refund: refunding $25.00 on A-1234" in out
    assert out.splitlines()[-1] == "agent: Update on your request: refunded $25.00 on A-1234"
    assert (tmp_path / "refund_agent.db").is_file()  # the checkpoints a restarted agent would resume from


async def test_mcp_session_deploys_after_approval(live_sqlite: Live, tmp_path: Path) -> None:
    out, req = await run_example(live_sqlite, tmp_path, "mcp_session.py", decision="approve")
    assert req["action"] == {"tool": "deploy", "args": {"service": "billing-api", "version": "2.4.1",
                                                        "environment": "production"}}
    lines = out.splitlines()
    assert lines[0] == "mcp: signoff offers request_approval, list_pending, get_request"
    assert any(line.startswith("signoff: Approved by Dana") for line in lines)
    assert lines[-1] == ('agent: deploying with '
                         '{"environment": "production", "service": "billing-api", "version": "2.4.1"}')
