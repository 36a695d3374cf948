"""A decision as the integrations hand it on: one JSON-safe dict, and the sentence an agent's model reads.

Two kinds of message: ``instruction`` for an agent that runs the action itself after asking (the MCP tool:
"run it with these args" / "do not run it"), and ``not_approved(...).message`` from ``signoff.decision`` for
adapters that run or skip the action on the agent's behalf (its text says the action "was not run").
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

from signoff.decision import Decision


def decided_by(d: Decision) -> dict[str, Any] | None:
    return None if d.by is None else {"id": d.by.id, "name": d.by.name, "via": d.by.via}


def outcome_dict(d: Decision) -> dict[str, Any]:
    """``{status, final_args, feedback, decided_by, request_id}``; ``final_args`` is None unless approved."""
    return {
        "status": d.status,
        "final_args": d.final_args if d.approved else None,
        "feedback": d.feedback,
        "decided_by": decided_by(d),
        "request_id": d.request_id,
    }


def _who(d: Decision, default: str) -> str:
    if d.by and d.by.via == "policy" and d.rule:
        return f"policy {d.rule!r}"
    return d.by.label if d.by else default


def _when(d: Decision) -> str:
    return f" at {d.at.astimezone(UTC).strftime('%H:%M')} UTC" if d.at else ""


def _args(args: Any) -> str:
    return json.dumps(args, ensure_ascii=False, sort_keys=True)


def instruction(d: Decision) -> str:
    """What an agent that runs the action itself must do now, written for its model to read."""
    tool = d.tool
    if d.status == "approved":
        return f"Approved by {_who(d, 'a reviewer')}{_when(d)}: run {tool} with these args: {_args(d.final_args)}"
    if d.status == "modified":
        return (f"Approved with edits by {_who(d, 'a reviewer')}{_when(d)}: run {tool} with these edited args, "
                f"not the ones you proposed: {_args(d.final_args)}")
    if d.status == "rejected":
        return (f"Rejected by {_who(d, 'a reviewer')}{_when(d)}: {d.feedback or '(no reason given)'} — do not run "
                f"{tool}. Change the action to address this feedback, or ask the user how to proceed.")
    if d.status == "expired":
        return (f"Expired{_when(d)}: nobody approved or rejected {tool} before its deadline — do not run it. "
                f"Tell the user it still needs a human decision, or ask whether to submit it again.")
    reason = f": {d.feedback}" if d.feedback else ""
    return f"Cancelled by {_who(d, 'someone')}{_when(d)}{reason} — do not run {tool}."
