"""signoff for LangGraph: pause a graph while a human decides in signoff, and resume it when they have.

    gate = Signoff()
    refund = signoff_tool(issue_refund, gate, risk="high")          # a tool for ToolNode / create_react_agent
    check = approval_node(gate, lambda s: ("issue_refund", {"amount": s["amount"]}))  # or a node of its own
    graph = builder.compile(checkpointer=SqliteSaver(sqlite3.connect("agent.db", check_same_thread=False)))

    graph.invoke(inputs, config)                        # pauses: interrupt() carrying the signoff request id
    SignoffResumer(graph, gate).run_until_done(config)  # later, even in another process: wait, then resume

How it works: the tool (or node) submits the action to signoff first, then calls ``interrupt()`` with
``{"signoff_request_id": ..., "action_request": {"action", "args"}, "config": {...}, "description": ...}`` — the
shape of LangGraph's human-interrupt convention, plus the id. The checkpointer saves the paused thread, so the
agent process may stop. ``SignoffResumer`` finds the thread's pending requests, waits for their decisions (or is
woken by the signoff webhook: ``resume_from_webhook``) and continues the thread with ``Command(resume=...)``.

When the node runs again on resume, its submission is answered from the first one (an idempotency key made
of the thread, the task and the action), so it is never asked twice. signoff stays the source of truth: the
resume value only wakes the node, which reads the decision from signoff, and pauses again if the request is
somehow still pending.

Decisions and LangGraph's human-interrupt convention (the resume value is a ``HumanResponse``):

============================  =====================================  ======================================
signoff decision              HumanResponse sent with the resume     what the tool wrapper does
============================  =====================================  ======================================
approved                      ``{"type": "accept", "args": None}``   runs the tool with the proposed args
modified (a reviewer edit)    ``{"type": "edit", "args":             runs the tool with the edited args
                              {"action": tool, "args": final}}``
rejected (with feedback)      ``{"type": "response", "args":         does not run it; the model reads the
                              feedback}``                            feedback
expired, cancelled            ``{"type": "ignore", "args": None}``   does not run it; the model reads why
============================  =====================================  ======================================

``pip install 'signoff[langgraph]'`` (LangGraph and its SQLite checkpointer).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from langchain_core.tools import BaseTool, StructuredTool
from langchain_core.tools import tool as as_tool
from langgraph.config import get_config
from langgraph.types import Command, interrupt
from typing_extensions import TypedDict  # pydantic validates resume values against it (Python < 3.12)

from signoff._gate import describe_error, describe_return
from signoff._wire import context_json, jsonable
from signoff.client import Signoff
from signoff.decision import Decision, not_approved
from signoff.errors import WaitTimedOut
from signoff.integrations._outcome import decided_by

log = logging.getLogger("signoff.langgraph")

ContextArg = Mapping[str, Any] | str | None


class ActionRequest(TypedDict):
    action: str
    args: dict[str, Any]


class HumanResponse(TypedDict):
    """LangGraph's human-interrupt answer: ``accept`` | ``edit`` (args: ActionRequest) | ``response`` (args:
    text) | ``ignore``."""

    type: Literal["accept", "edit", "response", "ignore"]
    args: str | ActionRequest | None


def to_human_response(d: Decision) -> HumanResponse:
    """A signoff decision in LangGraph's human-interrupt convention (see the table in the module docstring)."""
    if d.status == "approved":
        return {"type": "accept", "args": None}
    if d.status == "modified":
        return {"type": "edit", "args": {"action": d.tool, "args": dict(d.final_args or {})}}
    if d.status == "rejected":
        return {"type": "response", "args": d.feedback or ""}
    return {"type": "ignore", "args": None}


@dataclass(frozen=True)
class Approval:
    """The decision a node acts on: run with ``final_args`` when ``approved``, else tell the model ``message``."""

    decision: Decision

    @property
    def approved(self) -> bool:
        return self.decision.approved

    @property
    def final_args(self) -> dict[str, Any] | None:
        return self.decision.final_args if self.decision.approved else None

    @property
    def request_id(self) -> str:
        return self.decision.request_id

    @property
    def human_response(self) -> HumanResponse:
        return to_human_response(self.decision)

    @property
    def message(self) -> str:
        """Why the action was not run, for the model ("Rejected by Dana at 12:03 UTC: …"); empty when approved."""
        return "" if self.approved else not_approved(self.decision).message

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe, for graph state: ``{request_id, status, approved, final_args, feedback, decided_by,
        human_response, message}``."""
        d = self.decision
        return {"request_id": d.request_id, "status": d.status, "approved": d.approved,
                "final_args": self.final_args, "feedback": d.feedback, "decided_by": decided_by(d),
                "human_response": self.human_response, "message": self.message}


def _idempotency_key(thread_id: str, task: str, tool: str, args: Any) -> str:
    """The same action in the same task of the same thread is one request, however often the node re-runs."""
    canon = json.dumps([thread_id, task, tool, args], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "langgraph:" + hashlib.sha256(canon.encode()).hexdigest()


def _interrupt_value(data: dict[str, Any], description: str | None) -> dict[str, Any]:
    action = data.get("action") or {}
    tool = action.get("tool", "the action")
    return {
        "signoff_request_id": data["id"],
        "action_request": {"action": tool, "args": action.get("args") or {}},
        "config": {"allow_accept": True, "allow_edit": True, "allow_respond": True, "allow_ignore": True},
        "description": description or (f"Waiting for a human to approve, edit or reject {tool} in signoff "
                                        f"(request {data['id']}, expires {data.get('expires_at')})."),
    }


def request_approval(gate: Signoff, tool: str, args: Mapping[str, Any], *, context: ContextArg = None,
                     risk: str = "medium", labels: Sequence[str] | None = None, timeout_s: int | None = None,
                     callback_url: str | None = None, description: str | None = None) -> Approval:
    """Inside a graph node: submit the action, pause the graph until it is decided, return the decision.

    Needs a checkpointer and a ``thread_id``, as every ``interrupt()`` does. The request's ``context.session_id``
    is the thread id (``SignoffResumer.resume_from_webhook`` finds the thread by it)."""
    configurable = get_config().get("configurable") or {}
    thread_id = configurable.get("thread_id")
    if thread_id is None:
        raise ValueError("signoff approvals pause the graph: compile it with a checkpointer and run it with "
                         "config={'configurable': {'thread_id': ...}}")
    ctx = {**(context_json(context) or {}), "session_id": str(thread_id)}
    handle = gate.request(tool, args, context=ctx, risk=risk, labels=labels, timeout_s=timeout_s,
                          callback_url=callback_url,
                          idempotency_key=_idempotency_key(str(thread_id), str(configurable.get("checkpoint_ns")),
                                                           tool, jsonable(args)))
    while not handle.done:
        # The resume value only wakes this node up: the decision itself is read from signoff.
        interrupt(_interrupt_value(handle.data, description), response_schema=HumanResponse)
        handle.refresh()
    decision = handle.decision()
    assert decision is not None
    return Approval(decision)


def signoff_tool(tool: BaseTool | Callable[..., Any], gate: Signoff, *, risk: str = "medium",
                 labels: Sequence[str] | None = None, timeout_s: int | None = None, context: ContextArg = None,
                 callback_url: str | None = None) -> BaseTool:
    """``tool`` (a LangChain tool or a function) behind a signoff approval: each call pauses the graph until
    decided, then runs with the final args (reporting the outcome to signoff) or returns the reason it did not."""
    base = tool if isinstance(tool, BaseTool) else as_tool(tool)

    def run(**kwargs: Any) -> Any:
        approval = request_approval(gate, base.name, kwargs, context=context or f"{base.name} requested by the agent",
                                    risk=risk, labels=labels, timeout_s=timeout_s, callback_url=callback_url)
        if not approval.approved:
            return approval.message
        final_args = approval.final_args or {}
        try:
            out = base.invoke(final_args)
        except Exception as e:
            _report(gate, approval.request_id, False, describe_error(e))
            raise
        _report(gate, approval.request_id, True, describe_return(out))
        if approval.decision.modified and isinstance(out, str):
            d = approval.decision
            who = d.by.label if d.by else "a reviewer"
            edited = json.dumps(final_args, ensure_ascii=False, sort_keys=True)
            return f"[{who} edited the arguments before it ran; it ran with {edited}]\n{out}"
        return out

    return StructuredTool.from_function(func=run, name=base.name, description=base.description,
                                        args_schema=base.args_schema)


class ApprovalNode(Protocol):
    """A graph node: ``StateGraph.add_node`` matches nodes by the parameter name ``state``."""

    def __call__(self, state: Any) -> dict[str, Any]: ...


def approval_node(gate: Signoff, action: Callable[[Any], tuple[str, Mapping[str, Any]] | None], *,
                  key: str = "approval", risk: str = "medium", labels: Sequence[str] | None = None,
                  timeout_s: int | None = None, context: Callable[[Any], ContextArg] | ContextArg = None,
                  callback_url: str | None = None) -> ApprovalNode:
    """A node that asks signoff about ``action(state)`` — ``(tool, args)``, or None for nothing to ask — and
    writes ``Approval.as_dict()`` to ``state[key]`` (None when nothing was asked). Route on
    ``state[key]["approved"]`` and run the action with ``state[key]["final_args"]``."""

    def node(state: Any) -> dict[str, Any]:
        proposed = action(state)
        if proposed is None:
            return {key: None}
        tool, args = proposed
        ctx = context(state) if callable(context) else context
        approval = request_approval(gate, tool, args, context=ctx, risk=risk, labels=labels, timeout_s=timeout_s,
                                    callback_url=callback_url)
        return {key: approval.as_dict()}

    return node


def _report(gate: Signoff, request_id: str, ok: bool, detail: str) -> None:
    try:
        gate.report_result(request_id, ok, detail)
    except Exception as e:  # the tool's own outcome wins over a failed report
        log.warning("could not report the result of %s to signoff: %s", request_id, e)


@dataclass(frozen=True)
class PendingApproval:
    """An interrupt of a paused thread that waits for a signoff decision."""

    interrupt_id: str
    request_id: str
    tool: str | None


class SignoffResumer:
    """Continues paused threads of ``graph`` once signoff has decided what they wait for."""

    def __init__(self, graph: Any, gate: Signoff) -> None:
        self.graph = graph
        self.gate = gate

    def pending(self, config: Mapping[str, Any]) -> list[PendingApproval]:
        """The thread's interrupts that carry a signoff request id (from the checkpoint: no signoff call)."""
        out = []
        for intr in self.graph.get_state(config).interrupts:
            value = intr.value if isinstance(intr.value, dict) else {}
            if "signoff_request_id" in value:
                tool = (value.get("action_request") or {}).get("action")
                out.append(PendingApproval(intr.id, str(value["signoff_request_id"]), tool))
        return out

    def decisions(self, config: Mapping[str, Any], timeout: float | None = None) -> dict[str, HumanResponse]:
        """Wait for every pending approval of the thread; the resume value for each interrupt id.
        ``WaitTimedOut`` if they are not all decided within ``timeout`` seconds (None: no limit)."""
        resume: dict[str, HumanResponse] = {}
        for p in self.pending(config):
            resume[p.interrupt_id] = to_human_response(self.gate.get(p.request_id).wait(timeout, check=False))
        return resume

    def resume(self, config: Mapping[str, Any], *, timeout: float | None = None) -> Any:
        """Wait for the decisions the thread is paused on, then continue it once; returns what ``invoke``
        returns (which may hold a new ``__interrupt__`` if the graph asks again)."""
        resume = self.decisions(config, timeout)
        if not resume:
            raise LookupError(f"thread {_thread(config)!r} is not waiting for a signoff decision")
        return self.graph.invoke(Command(resume=resume), config)

    async def aresume(self, config: Mapping[str, Any], *, timeout: float | None = None) -> Any:
        """``resume`` for async graphs: waits in a worker thread, continues with ``ainvoke``."""
        import asyncio

        resume = await asyncio.to_thread(self.decisions, config, timeout)
        if not resume:
            raise LookupError(f"thread {_thread(config)!r} is not waiting for a signoff decision")
        return await self.graph.ainvoke(Command(resume=resume), config)

    def run_until_done(self, config: Mapping[str, Any], *, timeout: float | None = None) -> Any:
        """Resume as often as the thread pauses for signoff; returns the graph's final output."""
        result: Any = None
        while self.pending(config):
            result = self.resume(config, timeout=timeout)
        return result if result is not None else self.graph.get_state(config).values

    def resume_from_webhook(self, body: Mapping[str, Any]) -> Any | None:
        """Handle a signoff webhook (``{"type": "request.<status>", "data": <request>}``): if the request's thread
        now has every decision it waits for, continue it and return what ``invoke`` returns; otherwise None.
        The decisions are read from signoff itself, so a forged or replayed webhook cannot change them."""
        data = body.get("data") if isinstance(body.get("data"), Mapping) else body
        thread_id = ((data or {}).get("context") or {}).get("session_id")
        if not thread_id:
            return None
        config = {"configurable": {"thread_id": thread_id}}
        if data and data.get("id") not in {p.request_id for p in self.pending(config)}:
            return None
        try:
            resume = self.decisions(config, timeout=0)
        except WaitTimedOut:
            return None  # others in the same step are still waiting
        return self.graph.invoke(Command(resume=resume), config) if resume else None


def _thread(config: Mapping[str, Any]) -> Any:
    return (config.get("configurable") or {}).get("thread_id")
