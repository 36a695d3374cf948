"""The public JSON shape of a request (PRODUCT.md §4.1), shared by the API, webhooks and Slack blocks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.clock import iso
from bot.domain import EXPIRY_FEEDBACK, is_overdue

if TYPE_CHECKING:
    from storage.models import Request


_FIELDS = ("id", "status", "tool", "args", "final_args", "context", "risk", "agent", "channel", "reviewers",
           "required_approvals", "created_at", "expires_at", "decided_at", "decision_kind", "decided_by_id",
           "decided_by_name", "decided_via", "feedback", "rule", "result", "slack_channel", "slack_ts",
           "slack_permalink", "version", "callback_url")


def request_json(req: Request, *, now: datetime | None = None) -> dict[str, Any]:
    """``now`` makes a pending request past its deadline read as expired even before the sweep ran."""
    return row_json({f: getattr(req, f) for f in _FIELDS}, [lb.label for lb in req.labels], req.approvals, now=now)


def row_json(row: Mapping[str, Any], labels: Iterable[str], approvals: Iterable[Any] = (), *,
             now: datetime | None = None) -> dict[str, Any]:
    """The same JSON from a request's column values (a row just written or returned by an UPDATE), its labels
    and its approvals (anything with ``reviewer_id``, ``reviewer_name``, ``at``, ``version`` and ``via``)."""
    get = row.get
    status: str = row["status"]
    decision: dict[str, Any] | None = None
    decided_at = get("decided_at")
    expires_at: datetime = row["expires_at"]
    if now is not None and is_overdue(status, expires_at, now):
        status = "expired"
        decided_at = expires_at
        decision = {
            "kind": "expire",
            "by": {"id": "scheduler", "name": "signoff", "via": "scheduler"},
            "at": iso(expires_at),
            "feedback": EXPIRY_FEEDBACK,  # what the sweep will store: the decision must not change
            "rule": get("rule"),
        }
    elif get("decision_kind") is not None:
        decision = {
            "kind": get("decision_kind"),
            "by": {"id": get("decided_by_id"), "name": get("decided_by_name"), "via": get("decided_via")},
            "at": iso(decided_at),
            "feedback": get("feedback"),
            "rule": get("rule"),
        }
    slack = None
    if get("slack_channel") or get("slack_ts"):
        slack = {"channel": get("slack_channel"), "ts": get("slack_ts"), "permalink": get("slack_permalink")}
    final_args = get("final_args")
    if final_args is None and status in ("approved", "modified"):
        final_args = get("args")
    return {
        "id": get("id"),
        "status": status,
        "action": {"tool": get("tool"), "args": get("args")},
        "final_args": final_args,
        "context": get("context") or {},
        "risk": get("risk"),
        "labels": sorted(labels),
        "agent": get("agent"),
        "channel": get("channel"),
        "reviewers": list(get("reviewers") or []),
        "required_approvals": get("required_approvals"),
        "approvals": [
            {
                "reviewer": {"id": a.reviewer_id, "name": a.reviewer_name},
                "at": iso(a.at),
                "version": a.version,
                "via": a.via,
            }
            for a in approvals
        ],
        "decision": decision,
        "created_at": iso(get("created_at")),
        "expires_at": iso(expires_at),
        "decided_at": iso(decided_at),
        "result": get("result"),
        "slack": slack,
        "version": get("version"),
        "rule": get("rule"),
        "callback_url": get("callback_url"),
    }
