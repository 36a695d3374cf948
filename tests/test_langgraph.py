"""The LangGraph adapter against a live server: graphs paused by ``interrupt()`` while a reviewer decides through
the API, resumed by ``SignoffResumer`` — across a restart of the agent process, and through the webhook."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from signoff import Signoff
from signoff.decision import Decision
from signoff.integrations.langgraph import SignoffResumer, approval_node, to_human_response
from tests.conftest import Live
from tests.test_client import all_requests, decide, fetch, pending
from tests.test_outbox import settle

ROOT = Path(__file__).resolve().parent.parent

# The agent process: a messages graph whose scripted "model" asks for a refund through ToolNode, the refund tool
# wrapped by signoff_tool, checkpoints in a SQLite file. `start` runs until paused and then waits for the
# decision (the test kills it there); `resume` is a fresh process that continues the thread from the file.
AGENT = textwrap.dedent('''
    import json, sqlite3, sys
    from typing import Annotated
    from typing_extensions import TypedDict
    from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.graph import END, START, StateGraph
    from langgraph.graph.message import add_messages
    from langgraph.prebuilt import ToolNode, tools_condition
    from signoff import Signoff
    from signoff.integrations.langgraph import SignoffResumer, signoff_tool

    mode, db, ledger, thread = sys.argv[1:5]

    class State(TypedDict):
        messages: Annotated[list[AnyMessage], add_messages]

    def issue_refund(order_id: str, amount: float) -> str:
        """Refund part of an order."""
        with open(ledger, "a") as f:
            f.write(json.dumps({"order_id": order_id, "amount": amount}) + "\\n")
        return f"refunded {amount:.2f} on {order_id}"

    def model(state):
        last = state["messages"][-1]
        if isinstance(last, ToolMessage):
            return {"messages": [AIMessage(content="Done. " + last.content)]}
        call = {"name": "issue_refund", "args": {"order_id": "A-1234", "amount": 40.0}, "id": "call_1",
                "type": "tool_call"}
        return {"messages": [AIMessage(content="", tool_calls=[call])]}

    gate = Signoff()
    builder = StateGraph(State)
    builder.add_node("model", model)
    builder.add_node("tools", ToolNode([signoff_tool(issue_refund, gate, risk="high", labels=["finance"])]))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition)
    builder.add_edge("tools", "model")
    graph = builder.compile(checkpointer=SqliteSaver(sqlite3.connect(db, check_same_thread=False)))
    config = {"configurable": {"thread_id": thread}}
    resumer = SignoffResumer(graph, gate)

    if mode == "start":
        graph.invoke({"messages": [HumanMessage("Refund order A-1234")]}, config)
        print(json.dumps({"paused_on": [p.request_id for p in resumer.pending(config)]}), flush=True)
    final = resumer.run_until_done(config)
    print(json.dumps({"final": final["messages"][-1].content}), flush=True)
''')


def agent_process(live: Live, tmp_path: Path, mode: str) -> subprocess.Popen[str]:
    env = {**os.environ, "SIGNOFF_URL": live.url, "SIGNOFF_TOKEN": live.agent_token}
    return subprocess.Popen([sys.executable, "-c", AGENT, mode, str(tmp_path / "agent.db"),
                             str(tmp_path / "ledger.jsonl"), "thread-1"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)


async def read_line(proc: subprocess.Popen[str], within: float = 45.0) -> dict[str, Any]:
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), within)
    assert line, f"the agent process exited ({proc.wait()}) without output"
    return dict(json.loads(line))


async def test_a_paused_graph_survives_an_agent_restart_and_resumes_with_the_decision(live_sqlite: Live,
                                                                                      tmp_path: Path) -> None:
    live = live_sqlite
    first = agent_process(live, tmp_path, "start")
    try:
        paused = await read_line(first)
        [req] = await pending(live, 1)
        assert paused == {"paused_on": [req["id"]]}
        assert req["action"] == {"tool": "issue_refund", "args": {"order_id": "A-1234", "amount": 40.0}}
        assert (req["risk"], req["labels"], req["context"]["session_id"]) == ("high", ["finance"], "thread-1")
    finally:
        first.send_signal(signal.SIGKILL)  # the agent dies while a human decides
        first.wait()
    assert not (tmp_path / "ledger.jsonl").exists()

    await decide(live, req["id"], "edit", args={"order_id": "A-1234", "amount": 25.0})
    second = agent_process(live, tmp_path, "resume")
    try:
        final = await read_line(second)
        assert await asyncio.to_thread(second.wait, 30) == 0
    finally:
        if second.poll() is None:
            second.kill()
    ledger = [json.loads(x) for x in (tmp_path / "ledger.jsonl").read_text().splitlines()]
    assert ledger == [{"order_id": "A-1234", "amount": 25.0}]  # once, with the reviewer's amount
    assert final["final"].startswith("Done. [Dana edited the arguments before it ran")
    assert final["final"].endswith("refunded 25.00 on A-1234")
    assert len(await all_requests(live)) == 1  # re-running the tool node did not ask again
    stored = await fetch(live, req["id"])
    assert stored["status"] == "modified" and stored["result"]["ok"] is True


# --- an approval node, in process ---------------------------------------------------------------------


class RefundState(TypedDict, total=False):
    amount: float
    approval: dict[str, Any] | None
    outcome: str


def refund_graph(gate: Signoff, **node_kwargs: Any) -> Any:
    def refund(state: RefundState) -> dict[str, Any]:
        a = state["approval"]
        assert a is not None
        if not a["approved"]:
            return {"outcome": f"not refunded: {a['message']}"}
        return {"outcome": f"refunded {a['final_args']['amount']}"}

    b = StateGraph(RefundState)
    b.add_node("ask", approval_node(gate, lambda s: ("issue_refund", {"amount": s["amount"]}),
                                    context=lambda s: f"refund of {s['amount']}", **node_kwargs))
    b.add_node("refund", refund)
    b.add_edge(START, "ask")
    b.add_edge("ask", "refund")
    b.add_edge("refund", END)
    return b.compile(checkpointer=InMemorySaver())


@pytest.fixture
def gate(live_sqlite: Live) -> Iterator[Signoff]:
    with Signoff(live_sqlite.url, live_sqlite.agent_token) as g:
        yield g


@pytest.mark.parametrize(("decision", "body", "outcome", "response"), [
    ("approve", {}, "refunded 40", {"type": "accept", "args": None}),
    ("edit", {"args": {"amount": 30}}, "refunded 30", {"type": "edit", "args": {"action": "issue_refund",
                                                                                  "args": {"amount": 30}}}),
    ("reject", {"feedback": "over the limit"}, "not refunded: Rejected by Dana",
     {"type": "response", "args": "over the limit"}),
])
async def test_approval_node_pauses_and_the_resumer_continues_with_the_decision(
        live_sqlite: Live, gate: Signoff, decision: str, body: dict[str, Any], outcome: str,
        response: dict[str, Any]) -> None:
    graph = refund_graph(gate)
    config = {"configurable": {"thread_id": f"t-{decision}"}}
    first = await asyncio.to_thread(graph.invoke, {"amount": 40}, config)
    [intr] = first["__interrupt__"]
    [req] = await pending(live_sqlite, 1)
    assert intr.value["signoff_request_id"] == req["id"]
    assert intr.value["action_request"] == {"action": "issue_refund", "args": {"amount": 40}}
    assert req["context"] == {"summary": "refund of 40", "session_id": f"t-{decision}"}

    await decide(live_sqlite, req["id"], decision, **body)
    final = await asyncio.to_thread(SignoffResumer(graph, gate).run_until_done, config)
    assert final["outcome"].startswith(outcome)
    assert final["approval"]["human_response"] == response
    assert final["approval"]["request_id"] == req["id"]


async def test_a_resume_before_the_decision_pauses_the_graph_again(live_sqlite: Live, gate: Signoff) -> None:
    from langgraph.types import Command

    graph = refund_graph(gate)
    config = {"configurable": {"thread_id": "t-early"}}
    [first] = (await asyncio.to_thread(graph.invoke, {"amount": 40}, config))["__interrupt__"]
    # Someone answers the interrupt directly (say, from LangGraph Studio) while signoff still waits for a human.
    again = await asyncio.to_thread(graph.invoke, Command(resume={"type": "accept", "args": None}), config)
    [second] = again["__interrupt__"]
    assert second.value["signoff_request_id"] == first.value["signoff_request_id"]
    assert "outcome" not in again
    assert len(await all_requests(live_sqlite)) == 1


async def test_the_webhook_resumes_the_thread(live_sqlite: Live, gate: Signoff) -> None:
    hooks: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        await hooks.put(await request.json())  # acknowledge at once; resume outside the delivery
        return web.Response(status=204)

    async with receiver(hook) as url:
        graph = refund_graph(gate, callback_url=url)
        resumer = SignoffResumer(graph, gate)
        config = {"configurable": {"thread_id": "t-hook"}}
        await asyncio.to_thread(graph.invoke, {"amount": 40}, config)
        [req] = await pending(live_sqlite, 1)
        await decide(live_sqlite, req["id"], "approve")
        body = await asyncio.wait_for(hooks.get(), 20)
        final = await asyncio.to_thread(resumer.resume_from_webhook, body)
        await settle(live_sqlite.app, req["id"])
    assert body["type"] == "request.approved"
    assert final is not None and final["outcome"] == "refunded 40"
    assert resumer.pending(config) == []


async def test_a_webhook_for_an_unknown_thread_or_request_resumes_nothing(live_sqlite: Live, gate: Signoff) -> None:
    graph = refund_graph(gate)
    config = {"configurable": {"thread_id": "t-quiet"}}
    await asyncio.to_thread(graph.invoke, {"amount": 40}, config)
    resumer = SignoffResumer(graph, gate)
    other = {"type": "request.approved", "data": {"id": "req_other", "context": {"session_id": "t-quiet"}}}
    assert await asyncio.to_thread(resumer.resume_from_webhook, other) is None
    assert await asyncio.to_thread(resumer.resume_from_webhook, {"data": {"id": "x", "context": {}}}) is None
    [req] = await pending(live_sqlite, 1)
    # The webhook names the right request but it is still pending in signoff: nothing resumes.
    forged = {"type": "request.approved", "data": {"id": req["id"], "context": {"session_id": "t-quiet"}}}
    assert await asyncio.to_thread(resumer.resume_from_webhook, forged) is None
    assert [p.request_id for p in resumer.pending(config)] == [req["id"]]


def test_decisions_map_onto_the_human_interrupt_convention() -> None:
    def decided(status: str, **fields: Any) -> Decision:
        return Decision.from_request({"id": "req_1", "status": status, "action": {"tool": "t", "args": {"a": 1}},
                                      **fields})

    assert to_human_response(decided("approved")) == {"type": "accept", "args": None}
    assert to_human_response(decided("modified", final_args={"a": 2})) == {
        "type": "edit", "args": {"action": "t", "args": {"a": 2}}}
    assert to_human_response(decided("rejected", decision={"feedback": "no"})) == {"type": "response", "args": "no"}
    assert to_human_response(decided("expired")) == {"type": "ignore", "args": None}
    assert to_human_response(decided("cancelled")) == {"type": "ignore", "args": None}


@asynccontextmanager
async def receiver(handler: Any) -> AsyncIterator[str]:
    """A loopback HTTP server standing in for the agent's webhook endpoint; yields its URL."""
    app = web.Application()
    app.router.add_post("/signoff", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}/signoff"
    finally:
        await runner.cleanup()
