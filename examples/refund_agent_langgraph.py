"""A refund agent on LangGraph: the refund waits for a human in signoff, and the paused graph survives a restart.

No API key and no network besides signoff: a scripted node stands in for the LLM. The graph's checkpoints
live in a SQLite file, so the agent can stop while a human decides and pick the thread up later. Start a
signoff server, then:

    export SIGNOFF_TOKEN=$(signoff tokens create refund-agent --role agent | tail -1)
    python examples/refund_agent_langgraph.py "Refund \\$40 on order A-1234" --thread t1
    # stop it with Ctrl-C if you like, decide in Slack or with `signoff approvals ...`, then:
    python examples/refund_agent_langgraph.py --resume --thread t1

Reads SIGNOFF_URL (default http://127.0.0.1:3000) and SIGNOFF_TOKEN.
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import sys
from typing import Any

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from signoff import Signoff
from signoff.integrations.langgraph import SignoffResumer, approval_node


class State(TypedDict, total=False):
    request: str
    order_id: str
    amount: float
    approval: dict[str, Any] | None
    outcome: str
    reply: str


def plan(state: State) -> dict[str, Any]:
    """Stands in for the LLM: reads the order and the amount from the customer's request."""
    order = re.search(r"\b([A-Z]-?\d+)\b", state["request"])
    amount = re.search(r"\$?(\d+(?:\.\d{1,2})?)", state["request"].replace(order[0] if order else "", ""))
    proposal = {"order_id": order[1] if order else "unknown", "amount": float(amount[1]) if amount else 0.0}
    print(f"model: I will call issue_refund({proposal})", flush=True)
    return proposal


def issue_refund(order_id: str, amount: float) -> str:
    print(f"issue_refund: refunding ${amount:.2f} on {order_id}", flush=True)  # a real agent calls the PSP here
    return f"refunded ${amount:.2f} on {order_id}"


def refund(state: State) -> dict[str, Any]:
    a = state.get("approval") or {}
    if not a.get("approved"):
        return {"outcome": f"not refunded ({a.get('status')}): {a.get('message')}"}
    return {"outcome": issue_refund(**a["final_args"])}


def reply(state: State) -> dict[str, Any]:
    """Stands in for the LLM's answer to the customer."""
    return {"reply": f"Update on your request: {state['outcome']}"}


def build(gate: Signoff, db: str) -> Any:
    b = StateGraph(State)
    b.add_node("plan", plan)
    b.add_node("approve", approval_node(
        gate, lambda s: ("issue_refund", {"order_id": s["order_id"], "amount": s["amount"]}),
        context=lambda s: {"summary": f"Refund ${s['amount']:.2f} on order {s['order_id']}",
                           "user_request": s["request"]},
        risk="high", labels=["finance"]))
    b.add_node("refund", refund)
    b.add_node("reply", reply)
    b.add_edge(START, "plan")
    b.add_edge("plan", "approve")
    b.add_edge("approve", "refund")
    b.add_edge("refund", "reply")
    b.add_edge("reply", END)
    return b.compile(checkpointer=SqliteSaver(sqlite3.connect(db, check_same_thread=False)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("request", nargs="?", default="Refund $40 on order A-1234")
    p.add_argument("--thread", default="refund-1", help="the conversation (LangGraph thread id)")
    p.add_argument("--db", default="refund_agent.db", help="SQLite file for the graph's checkpoints")
    p.add_argument("--resume", action="store_true", help="continue a thread paused by an earlier run")
    args = p.parse_args()
    config = {"configurable": {"thread_id": args.thread}}
    with Signoff() as gate:
        graph = build(gate, args.db)
        resumer = SignoffResumer(graph, gate)
        if not args.resume:
            print(f"user: {args.request}", flush=True)
            graph.invoke({"request": args.request}, config)
        waiting = resumer.pending(config)
        if not waiting and args.resume:
            print(f"thread {args.thread!r} is not waiting for a decision", file=sys.stderr)
            return 1
        for w in waiting:
            print(f"graph paused: {w.tool} waits for a human in signoff ({w.request_id}); you may stop this "
                  f"process and continue later with --resume --thread {args.thread}", flush=True)
        final = resumer.run_until_done(config)
    print(f"agent: {final['reply']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
