"""signoff for the OpenAI Agents SDK: every tool call that needs approval is decided by a human in signoff.

    from agents import Agent, function_tool
    from signoff import AsyncSignoff
    from signoff.integrations.openai_agents import run_with_signoff, signoff_tool

    @function_tool
    def send_email(to: str, subject: str, body: str) -> str: ...

    agent = Agent(name="Mailer", instructions="...", tools=[signoff_tool(send_email, risk="high")])
    result = await run_with_signoff(agent, "Tell Dana her refund went through", AsyncSignoff())

How it works: a tool marked ``needs_approval`` makes ``Runner.run`` pause and return ``result.interruptions``.
``run_with_signoff`` submits each interruption to signoff (the tool name, its parsed arguments, and context from
the run: the agent, the user's request, the model's last message), waits for the decisions, records them on
the run state — ``state.approve(item)`` or ``state.reject(item, rejection_message=...)`` — and resumes the run
with ``Runner.run(agent, state)``, until it finishes without interruptions.

- **approve**: the call runs as the model proposed it.
- **reject**, **expired**, **cancelled**: the call is rejected; the model reads why, as the tool's output
  ("Rejected by Dana at 12:03 UTC: <feedback> …").
- **edit**: the SDK cannot approve a call with other arguments (``RunState.approve`` takes none, and a changed
  call is refused as a reused call id), so an edit is carried out in one of two ways:

  1. for tools wrapped with ``signoff_tool`` (the recommended way), the call is approved and the wrapper runs
     the tool with the reviewer's ``final_args`` instead of the model's; the output the model reads starts with
     a note saying which arguments it ran with. The call runs exactly once, with exactly the approved args.
  2. for any other tool, the call is rejected with a message that carries the edited arguments and asks the
     model to call the tool again with exactly those; that next call, if its arguments equal the approved
     ones, is approved without asking the reviewer a second time (once). A model that changes them again is
     asked about again.

Tools wrapped with ``signoff_tool`` also report their outcome back to signoff (shown on the Slack card).
``pip install 'signoff[openai-agents]'``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agents import Agent, FunctionTool, ItemHelpers, MessageOutputItem, Runner, RunResult, function_tool
from agents.items import ToolApprovalItem
from agents.run_state import RunState
from agents.tool_context import ToolContext

from signoff._gate import describe_error, describe_return
from signoff.aio import AsyncSignoff
from signoff.decision import Decision, not_approved
from signoff.handle import AsyncRequestHandle

log = logging.getLogger("signoff.openai_agents")

MAX_ROUNDS = 20
WITHDRAWN = "the agent run stopped waiting for the decision"


@dataclass(frozen=True)
class ToolOptions:
    """How calls of one tool are submitted (``None`` falls back to the ``SignoffApprovals`` defaults)."""

    risk: str | None = None
    labels: Sequence[str] | None = None
    timeout_s: int | None = None


@dataclass(frozen=True)
class _Approved:
    decision: Decision
    report: Callable[[bool, str], Awaitable[None]]


class SignoffInvoker:
    """The ``on_invoke_tool`` of a ``signoff_tool``: runs an approved call with the decision's ``final_args``."""

    def __init__(self, inner: Callable[[ToolContext[Any], str], Awaitable[Any]], options: ToolOptions) -> None:
        self.inner = inner
        self.options = options
        self._approved: dict[str, _Approved] = {}

    def expect(self, call_id: str, decision: Decision, report: Callable[[bool, str], Awaitable[None]]) -> None:
        """The call ``call_id`` was approved: run it with ``decision.final_args`` when it is invoked."""
        self._approved[call_id] = _Approved(decision, report)

    async def __call__(self, ctx: ToolContext[Any], arguments: str) -> Any:
        approved = self._approved.pop(ctx.tool_call_id, None)
        if approved is None:  # approved some other way (or needs_approval said no): run as proposed
            return await self.inner(ctx, arguments)
        d = approved.decision
        if d.modified and d.final_args is not None:
            arguments = json.dumps(d.final_args, ensure_ascii=False)
        try:
            out = await self.inner(ctx, arguments)
        except Exception as e:
            await approved.report(False, describe_error(e))
            raise
        await approved.report(True, describe_return(out))
        if d.modified and isinstance(out, str):
            who = d.by.label if d.by else "a reviewer"
            return f"[{who} edited the arguments before it ran; it ran with {arguments}]\n{out}"
        return out


def signoff_tool(tool: FunctionTool | Callable[..., Any], *, risk: str | None = None,
                 labels: Sequence[str] | None = None, timeout_s: int | None = None) -> FunctionTool:
    """A copy of ``tool`` (a ``FunctionTool`` or a plain function) that needs approval and, when a reviewer
    edits a call, runs it with the edited arguments. A ``needs_approval`` callable already on the tool is kept
    (it still decides which calls need approval)."""
    base = tool if isinstance(tool, FunctionTool) else function_tool(tool)
    needs = base.needs_approval if callable(base.needs_approval) else True
    invoker = SignoffInvoker(base.on_invoke_tool, ToolOptions(risk, labels, timeout_s))
    return dataclasses.replace(base, needs_approval=needs, on_invoke_tool=invoker)


def _invoker_for(item: ToolApprovalItem) -> SignoffInvoker | None:
    tools = getattr(item.agent, "tools", None) or []
    for t in tools:
        if isinstance(t, FunctionTool) and t.name == item.tool_name and isinstance(t.on_invoke_tool, SignoffInvoker):
            return t.on_invoke_tool
    return None


def _parsed_args(item: ToolApprovalItem) -> dict[str, Any]:
    raw = item.arguments
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return {"arguments": raw}  # the reviewer still sees what the model sent
    return value if isinstance(value, dict) else {"arguments": value}


def _text_of(input: Any) -> str | None:
    """The user's request: the input string, or the text of the last user message in an input list."""
    if isinstance(input, str):
        return input
    for item in reversed(input if isinstance(input, list) else []):
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            texts = [str(c["text"]) for c in content or [] if isinstance(c, dict) and isinstance(c.get("text"), str)]
            if texts:
                return "\n".join(texts)
    return None


def edit_message(d: Decision) -> str:
    """What the model reads when an edit cannot be applied to its call (a tool not wrapped by ``signoff_tool``)."""
    who = d.by.label if d.by else "a reviewer"
    feedback = f" ({d.feedback})" if d.feedback else ""
    return (f"Not run as proposed: {who} approved {d.tool} only with these edited arguments{feedback}: "
            f"{json.dumps(d.final_args, ensure_ascii=False, sort_keys=True)}. Call {d.tool} again with exactly "
            f"these arguments; that call is already approved (request {d.request_id}).")


class SignoffApprovals:
    """Decides a run's interruptions in signoff. Defaults apply to tools without their own ``ToolOptions``;
    ``request_context`` is merged into the context each request carries (``summary``, ``user_request`` …);
    ``session_id`` ties the requests to a conversation; ``on_request`` is told of each request submitted (to
    tell the user who is being asked, say)."""

    def __init__(self, gate: AsyncSignoff, *, risk: str = "medium", labels: Sequence[str] | None = None,
                 timeout_s: int | None = None, request_context: Mapping[str, Any] | None = None,
                 session_id: str | None = None,
                 on_request: Callable[[AsyncRequestHandle], None] | None = None) -> None:
        self.gate = gate
        self.on_request = on_request
        self.defaults = ToolOptions(risk, labels, timeout_s)
        self.request_context = dict(request_context or {})
        self.session_id = session_id
        self._preapproved: list[tuple[str, dict[str, Any], Decision]] = []

    async def decide(self, result: RunResult) -> RunState[Any, Agent[Any]]:
        """Ask signoff about every interruption of ``result``; the state to resume from, decisions recorded.
        If this is interrupted (cancelled, or an error), the requests it submitted are withdrawn."""
        state = result.to_state()
        asked: list[tuple[ToolApprovalItem, AsyncRequestHandle]] = []
        try:
            for item in result.interruptions:
                earlier = self._take_preapproved(item)
                if earlier is not None:
                    log.info("%s: approved as edited in %s", item.tool_name, earlier.request_id)
                    state.approve(item)
                else:
                    handle = await self._submit(item, result)
                    asked.append((item, handle))
                    if self.on_request is not None:
                        self.on_request(handle)
            async with asyncio.TaskGroup() as tg:
                waits = [tg.create_task(h.wait(check=False)) for _, h in asked]
        except BaseException:
            await asyncio.shield(self._withdraw([h for _, h in asked]))
            raise
        for (item, _), wait in zip(asked, waits, strict=True):
            self._apply(state, item, wait.result())
        return state

    async def run(self, agent: Agent[Any], input: str | list[Any], *, max_rounds: int = MAX_ROUNDS,
                  **run_kwargs: Any) -> RunResult:
        """``Runner.run`` until the run ends without waiting for approvals (``run_kwargs`` go to every call;
        ``context`` only to the first, as the run state carries it afterwards)."""
        result = await Runner.run(agent, input, **run_kwargs)
        resume_kwargs = {k: v for k, v in run_kwargs.items() if k != "context"}
        for _ in range(max_rounds):
            if not result.interruptions:
                return result
            state = await self.decide(result)
            result = await Runner.run(agent, state, **resume_kwargs)
        if result.interruptions:
            raise RuntimeError(f"the run still waits for approvals after {max_rounds} rounds of decisions")
        return result

    async def _submit(self, item: ToolApprovalItem, result: RunResult) -> AsyncRequestHandle:
        invoker = _invoker_for(item)
        opts = invoker.options if invoker is not None else ToolOptions()
        return await self.gate.request(
            item.tool_name or "tool", _parsed_args(item), context=self._context(item, result),
            risk=opts.risk or self.defaults.risk or "medium",
            labels=opts.labels if opts.labels is not None else self.defaults.labels,
            timeout_s=opts.timeout_s if opts.timeout_s is not None else self.defaults.timeout_s)

    def _context(self, item: ToolApprovalItem, result: RunResult) -> dict[str, Any]:
        agent_name = getattr(item.agent, "name", None) or "the agent"
        ctx: dict[str, Any] = {"summary": f"{agent_name} wants to run {item.tool_name}"}
        user_request = _text_of(result.input)
        if user_request:
            ctx["user_request"] = user_request
        said = [ItemHelpers.text_message_output(i) for i in result.new_items if isinstance(i, MessageOutputItem)]
        if said and said[-1].strip():
            ctx["reasoning"] = said[-1]
        if self.session_id:
            ctx["session_id"] = self.session_id
        return {**ctx, **self.request_context}

    def _apply(self, state: RunState[Any, Agent[Any]], item: ToolApprovalItem, d: Decision) -> None:
        invoker = _invoker_for(item)
        if d.approved and invoker is not None and item.call_id:
            invoker.expect(item.call_id, d, self._reporter(d.request_id))
            state.approve(item)
        elif d.status == "approved":
            state.approve(item)
        elif d.modified and d.final_args is not None:
            self._preapproved.append((item.tool_name or "", dict(d.final_args), d))
            state.reject(item, rejection_message=edit_message(d))
        else:
            state.reject(item, rejection_message=not_approved(d).message)

    def _take_preapproved(self, item: ToolApprovalItem) -> Decision | None:
        args = _parsed_args(item)
        for i, (tool, final_args, decision) in enumerate(self._preapproved):
            if tool == item.tool_name and final_args == args:
                del self._preapproved[i]
                return decision
        return None

    def _reporter(self, request_id: str) -> Callable[[bool, str], Awaitable[None]]:
        async def report(ok: bool, detail: str) -> None:
            try:
                await self.gate.report_result(request_id, ok, detail)
            except Exception as e:  # the tool's own outcome wins over a failed report
                log.warning("could not report the result of %s to signoff: %s", request_id, e)
        return report

    async def _withdraw(self, handles: Sequence[AsyncRequestHandle]) -> None:
        for h in handles:
            if not h.done:
                try:
                    await h.cancel(WITHDRAWN)
                except Exception as e:
                    log.warning("could not withdraw %s: %s", h.id, e)


async def run_with_signoff(agent: Agent[Any], input: str | list[Any], gate: AsyncSignoff, *,
                           risk: str = "medium", labels: Sequence[str] | None = None, timeout_s: int | None = None,
                           request_context: Mapping[str, Any] | None = None, session_id: str | None = None,
                           on_request: Callable[[AsyncRequestHandle], None] | None = None,
                           max_rounds: int = MAX_ROUNDS, **run_kwargs: Any) -> RunResult:
    """Run ``agent`` on ``input``, having every approval it asks for decided in signoff, until it finishes.
    ``run_kwargs`` (``run_config``, ``max_turns``, ``hooks``, the run's ``context`` …) go to ``Runner.run``."""
    approvals = SignoffApprovals(gate, risk=risk, labels=labels, timeout_s=timeout_s,
                                 request_context=request_context, session_id=session_id, on_request=on_request)
    return await approvals.run(agent, input, max_rounds=max_rounds, **run_kwargs)
