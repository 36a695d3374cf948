"""An email agent on the OpenAI Agents SDK whose send_email needs a human's approval in signoff.

No API key and no network besides signoff: a scripted model stands in for the LLM (it drafts one email from
the request, then reports what the tool said). Start a signoff server, then:

    export SIGNOFF_TOKEN=$(signoff tokens create email-agent --role agent | tail -1)
    python examples/email_agent.py "Tell dana@customer.com her refund of \\$40 went through"

and decide in Slack, or from another terminal: ``signoff approvals approve|edit|reject REQ_ID --as You``.
Reads SIGNOFF_URL (default http://127.0.0.1:3000) and SIGNOFF_TOKEN.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from typing import Any

from agents import Agent, ModelResponse, RunConfig, Usage, function_tool
from agents.models.interface import Model
from agents.testing import assistant_message, function_call

from signoff import AsyncSignoff
from signoff.handle import AsyncRequestHandle
from signoff.integrations.openai_agents import run_with_signoff, signoff_tool


class ScriptedModel(Model):
    """Stands in for the LLM: drafts one email from the user's request, then reports the tool's answer."""

    async def get_response(self, system_instructions: str | None, input: str | list[Any], *args: Any,
                           **kwargs: Any) -> ModelResponse:
        items = input if isinstance(input, list) else [{"role": "user", "content": input}]
        outputs = [str(i["output"]) for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"]
        if outputs:
            return reply(f"Here is what happened: {outputs[-1]}")
        request = next(str(i["content"]) for i in items if isinstance(i, dict) and i.get("role") == "user")
        to = re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", request)
        if to is None:
            return reply("Whom should I write to? Give me an email address.")
        name = to[0].split("@")[0].split(".")[0].title()
        news = request.split(to[0], 1)[-1].strip().replace("her ", "your ").replace("his ", "your ")
        news = news[:1].upper() + news[1:]
        draft = {"to": to[0], "subject": "About your request",
                 "body": f"Hi {name},\n\n{news or 'just checking in'}.\n\nBest,\nSupport"}
        print(f"model: I will call send_email({draft})", flush=True)
        return ModelResponse(output=[function_call("send_email", draft, call_id="call_send_1")], usage=Usage(),
                             response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("this scripted model does not stream; run the agent without streaming")


def reply(text: str) -> ModelResponse:
    return ModelResponse(output=[assistant_message(text)], usage=Usage(), response_id=None)


@function_tool
def send_email(to: str, subject: str, body: str) -> str:
    """Send an email."""
    print(f"send_email: sending to {to!r}, subject {subject!r}", flush=True)  # a real agent would send it here
    return f"Email sent to {to} with subject {subject!r}."


def announce(handle: AsyncRequestHandle) -> None:
    print(f"signoff: waiting for a human to approve, edit or reject {handle.id}", flush=True)


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("request", nargs="?", default="Tell dana@customer.com her refund of $40 went through")
    args = p.parse_args()
    agent = Agent(name="Email agent", instructions="You write and send emails for the support team.",
                  tools=[signoff_tool(send_email, risk="high", labels=["needs-human-review"])],
                  model=ScriptedModel())
    print(f"user: {args.request}", flush=True)
    async with AsyncSignoff() as gate:
        result = await run_with_signoff(agent, args.request, gate, on_request=announce,
                                        run_config=RunConfig(tracing_disabled=True))
    print(f"agent: {result.final_output}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
