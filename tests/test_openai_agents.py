"""The OpenAI Agents SDK adapter against a live server: a real ``Runner`` with a scripted model (no network, no
API key) whose tool calls need approval; the test decides each request through the API as a reviewer."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from agents import Agent, FunctionTool, ModelResponse, RunConfig, Usage, function_tool
from agents.models.interface import Model
from agents.testing import assistant_message, function_call

from signoff import AsyncSignoff
from signoff.integrations.openai_agents import run_with_signoff, signoff_tool
from tests.conftest import Live
from tests.test_client import all_requests, decide, pending

NO_TRACING = RunConfig(tracing_disabled=True)
EMAIL = {"to": "dana@customer.com", "subject": "Your refund", "body": "Hi Dana, it went through."}
EDITED = {**EMAIL, "subject": "Your refund of $40"}
AGAIN = re.compile(r"edited arguments[^:]*: (\{.*\})\. Call ")


class ScriptedModel(Model):
    """Stands in for the LLM: proposes one ``send_email`` call, follows an instruction to call again with given
    arguments, and otherwise finishes by repeating what the last tool output said."""

    def __init__(self, args: dict[str, Any]) -> None:
        self.args = args
        self.turns = 0

    async def get_response(self, system_instructions: str | None, input: str | list[Any], *a: Any,
                           **kw: Any) -> ModelResponse:
        self.turns += 1
        items = input if isinstance(input, list) else []
        outputs = [str(i["output"]) for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"]
        if not outputs:
            out = function_call("send_email", self.args, call_id="call_1")
        elif (again := AGAIN.search(outputs[-1])) and len(outputs) == 1:
            out = function_call("send_email", json.loads(again[1]), call_id="call_2")
        else:
            out = assistant_message(f"Finished. The tool said: {outputs[-1]}")
        return ModelResponse(output=[out], usage=Usage(), response_id=None)

    def stream_response(self, *a: Any, **kw: Any) -> Any:
        raise RuntimeError("the scripted model does not stream; run the agent without streaming")


def email_tool(sent: list[dict[str, Any]]) -> FunctionTool:
    @function_tool
    def send_email(to: str, subject: str, body: str) -> str:
        """Send an email."""
        sent.append({"to": to, "subject": subject, "body": body})
        return f"sent to {to}: {subject}"

    return send_email


def plain_email_tool(sent: list[dict[str, Any]]) -> FunctionTool:
    @function_tool(needs_approval=True)
    def send_email(to: str, subject: str, body: str) -> str:
        """Send an email."""
        sent.append({"to": to, "subject": subject, "body": body})
        return f"sent to {to}: {subject}"

    return send_email


@pytest.fixture
async def gate(live_sqlite: Live) -> AsyncIterator[AsyncSignoff]:
    async with AsyncSignoff(live_sqlite.url, live_sqlite.agent_token) as g:
        yield g


Decisions = list[tuple[str, dict[str, Any]]]


async def run_and_decide(live: Live, gate: AsyncSignoff, tool: FunctionTool, decisions: Decisions,
                         **kwargs: Any) -> tuple[str, list[dict[str, Any]]]:
    """Run the agent; decide each request it submits, in order. Returns the final output and the requests."""
    agent = Agent(name="Mailer", instructions="Send the emails the user asks for.", tools=[tool],
                  model=ScriptedModel(EMAIL))
    run = asyncio.create_task(run_with_signoff(agent, "Tell Dana her refund went through", gate,
                                               run_config=NO_TRACING, **kwargs))
    for n, (decision, body) in enumerate(decisions, start=1):
        reqs = await pending(live, 1, within=20.0)
        assert len(await all_requests(live)) == n
        await decide(live, reqs[0]["id"], decision, **body)
    result = await asyncio.wait_for(run, 30)
    return str(result.final_output), await all_requests(live)


async def test_approved_call_runs_as_proposed_with_context_from_the_run(live_sqlite: Live,
                                                                       gate: AsyncSignoff) -> None:
    sent: list[dict[str, Any]] = []
    tool = signoff_tool(email_tool(sent), risk="high", labels=["needs-human-review"])
    output, [req] = await run_and_decide(live_sqlite, gate, tool, [("approve", {})], session_id="conv-7")
    assert sent == [EMAIL]
    assert output == "Finished. The tool said: sent to dana@customer.com: Your refund"
    assert req["action"] == {"tool": "send_email", "args": EMAIL}
    assert (req["risk"], req["labels"]) == ("high", ["needs-human-review"])
    assert req["context"]["summary"] == "Mailer wants to run send_email"
    assert req["context"]["user_request"] == "Tell Dana her refund went through"
    assert req["context"]["session_id"] == "conv-7"
    assert req["result"]["ok"] is True and "sent to dana@customer.com" in req["result"]["detail"]


@pytest.mark.parametrize("wrapped", [True, False], ids=["signoff_tool", "plain-needs_approval"])
async def test_rejected_call_is_not_run_and_the_model_reads_the_feedback(live_sqlite: Live, gate: AsyncSignoff,
                                                                         wrapped: bool) -> None:
    sent: list[dict[str, Any]] = []
    tool = signoff_tool(email_tool(sent)) if wrapped else plain_email_tool(sent)
    output, [req] = await run_and_decide(live_sqlite, gate, tool,
                                         [("reject", {"feedback": "Mention the 5-day delay"})])
    assert sent == []
    assert req["status"] == "rejected"
    assert output.startswith("Finished. The tool said: Rejected by Dana")
    assert "Mention the 5-day delay" in output and "was not run" in output


async def test_expired_call_is_not_run_and_the_model_is_told(live_sqlite: Live, gate: AsyncSignoff) -> None:
    sent: list[dict[str, Any]] = []
    output, [req] = await run_and_decide(live_sqlite, gate, signoff_tool(email_tool(sent), timeout_s=1), [])
    assert sent == [] and req["status"] == "expired"
    assert "Approval expired" in output and "send_email action" in output


async def test_edit_runs_a_signoff_tool_once_with_the_reviewers_args(live_sqlite: Live, gate: AsyncSignoff) -> None:
    sent: list[dict[str, Any]] = []
    output, [req] = await run_and_decide(live_sqlite, gate, signoff_tool(email_tool(sent)),
                                         [("edit", {"args": EDITED})])
    assert sent == [EDITED]
    assert req["status"] == "modified" and req["result"]["ok"] is True
    assert "Dana edited the arguments before it ran" in output
    assert output.endswith("sent to dana@customer.com: Your refund of $40")


async def test_edit_of_a_plain_tool_is_rerun_by_the_model_with_the_edited_args(live_sqlite: Live,
                                                                              gate: AsyncSignoff) -> None:
    sent: list[dict[str, Any]] = []
    output, [req] = await run_and_decide(live_sqlite, gate, plain_email_tool(sent), [("edit", {"args": EDITED})])
    # The first call was turned back with the edited args; the model's second call, with exactly those, was
    # approved by the same decision: one request, one email, the edited one.
    assert sent == [EDITED]
    assert req["status"] == "modified"
    assert output == "Finished. The tool said: sent to dana@customer.com: Your refund of $40"
