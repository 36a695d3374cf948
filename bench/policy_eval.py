"""Policy evaluation cost with 200 rules (target: at most 50 µs per evaluation).

Two rule sets, each evaluated 100,000 times over a rotating set of requests whose matching rule is near the
end of the list, or which match none:

* ``mixed``: 200 varied rules over 25 tools (exact names and globs), agent globs, risks, labels, regexes,
  ``domain_in``, numeric bounds, dotted paths, ``not`` and time windows — what a real file looks like;
* ``all-candidates``: every rule applies to every tool, agent and risk, so all 200 go through their label,
  argument and time checks — the worst case for the tool index.

Run: ``.venv/bin/python bench/policy_eval.py``
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import timeit
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.policy import Policy, parse_policies

TARGET_US = 50.0
EVALUATIONS = 100_000
BATCH = 1_000
TOOLS = [f"tool_{i:02d}" for i in range(20)] + ["send_email", "issue_refund", "run_sql", "deploy_web",
                                                 "deploy_db"]
ZONES = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC"]


def _condition(i: int) -> dict[str, Any]:
    """One of several kinds of argument condition, chosen by ``i``, that the benchmark requests fail."""
    kind = i % 7
    if kind == 0:
        return {"query": {"regex": rf"(?i)\bdrop\s+table\s+t{i}\b"}}
    if kind == 1:
        return {"to": {"domain_in": [f"partner{i}.com", f"customer{i}.org"]}}
    if kind == 2:
        return {"payment.amount": {"gt": 10_000 + i}}
    if kind == 3:
        return {"env": {"in": [f"env{i}", f"stage{i}"]}, "count": {"lte": 3}}
    if kind == 4:
        return {"path": {"glob": f"/srv/{i}/*"}}
    if kind == 5:
        return {"to": {"not": {"domain_in": ["example.com", "example.org", f"x{i}.net"]}}}
    return {"flag": {"eq": f"value-{i}"}}


def _window(i: int) -> dict[str, Any]:
    # Windows the benchmark's fixed instant (a Wednesday, 03:00 UTC) falls outside of.
    return {"inside": {"days": ["sat", "sun"], "hours": "10:00-16:00", "timezone": ZONES[i % len(ZONES)]}}


def mixed_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for i in range(199):
        match: dict[str, Any] = {"args": _condition(i)}
        tool = TOOLS[i % len(TOOLS)]
        match["tool"] = tool if i % 4 else tool.split("_")[0] + "_*"
        if i % 5 == 0:
            match["agent"] = "agent-*"
        if i % 6 == 0:
            match["risk"] = ["high", "critical"] if i % 12 else "medium"
        if i % 9 == 0:
            match["labels"] = ["needs-human-review"]
        if i % 8 == 0:
            match["time"] = _window(i)
        effect = ("require", "auto_approve", "deny", "budget")[i % 4]
        rule: dict[str, Any] = {"name": f"rule-{i:03d}", "match": match, "effect": effect}
        if effect == "deny":
            rule["reason"] = f"rule {i} says no"
        if effect == "budget":
            rule["budget"] = {"max": 20, "window_s": 3600}
        rules.append(rule)
    rules.append({"name": "catch-refunds", "effect": "require", "required_approvals": 2,
                  "match": {"tool": "issue_refund", "args": {"payment.amount": {"gt": 500}}}})
    return rules


def all_candidate_rules() -> list[dict[str, Any]]:
    rules = []
    for i in range(199):
        match: dict[str, Any] = {"tool": "*", "args": _condition(i)}
        if i % 8 == 0:
            match = {"tool": "*", "time": _window(i)}
        rules.append({"name": f"rule-{i:03d}", "match": match, "effect": "require"})
    rules.append({"name": "last", "effect": "deny", "reason": "no",
                  "match": {"tool": "*", "args": {"payment.amount": {"gt": 500}}}})
    return rules


def requests(tools: list[str]) -> list[dict[str, Any]]:
    base: dict[str, Any] = {
        "agent": "agent-billing", "risk": "high", "labels": ["needs-human-review"],
        "args": {"query": "select 1", "to": ["a@example.com", "Bo <bo@example.org>"], "env": "prod",
                 "count": 7, "path": "/home/x", "flag": "other", "payment": {"amount": 900}},
    }
    out = []
    for tool in tools:
        out.append(dict(base, tool=tool))
        out.append(dict(base, tool=tool, args=dict(base["args"], payment={"amount": 20})))
    return out


def measure(policy: Policy, reqs: list[dict[str, Any]]) -> tuple[list[float], list[float], set[str | None]]:
    """Per-batch µs per evaluation, wall clock and this process's CPU time, and the outcomes seen."""
    now = datetime(2026, 3, 25, 3, 0, tzinfo=UTC)
    outcomes: set[str | None] = set()
    for req in reqs:  # warm-up, and the outcomes the figures are for
        verdict = policy.evaluate(now=now, **req)
        outcomes.add(verdict.rule_name if verdict else None)
    wall: list[float] = []
    cpu: list[float] = []
    evaluate = policy.evaluate
    n = len(reqs)
    for b in range(EVALUATIONS // BATCH):
        start, start_cpu = time.perf_counter_ns(), time.process_time_ns()
        for k in range(BATCH):
            req = reqs[(b + k) % n]
            evaluate(tool=req["tool"], agent=req["agent"], risk=req["risk"], labels=req["labels"],
                     args=req["args"], now=now)
        wall.append((time.perf_counter_ns() - start) / BATCH / 1000)
        cpu.append((time.process_time_ns() - start_cpu) / BATCH / 1000)
    return wall, cpu, outcomes


def _figures(per_batch: list[float]) -> str:
    p99 = statistics.quantiles(per_batch, n=100)[98]
    return f"mean {statistics.fmean(per_batch):6.2f} µs  p99 {p99:6.2f} µs"


def main() -> None:
    cases = [
        ("mixed", mixed_rules(), requests(["issue_refund", "deploy_db", "tool_07", "unknown_tool"])),
        ("all-candidates", all_candidate_rules(), requests(["issue_refund", "anything"])),
    ]
    call_ns = min(timeit.repeat("f(1)", "f = lambda x: x", number=200_000, repeat=5)) / 200_000 * 1e9
    print(f"{EVALUATIONS:,} evaluations per case, {len(cases[0][1])} rules, batches of {BATCH}; "
          f"target {TARGET_US:.0f} µs")
    print(f"machine: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
          f"one Python function call costs {call_ns:.0f} ns here")
    for name, rules, reqs in cases:
        policy = parse_policies(rules, source=f"bench:{name}")
        wall, cpu, outcomes = measure(policy, reqs)
        verdict = "within target" if statistics.quantiles(cpu, n=100)[98] <= TARGET_US else "OVER TARGET"
        shown = ", ".join(sorted(o or "no match" for o in outcomes))
        print(f"{name:>15}: wall {_figures(wall)} | cpu {_figures(cpu)}  {verdict} (outcomes: {shown})")


if __name__ == "__main__":
    main()
