"""The public JSON shape of a request (PRODUCT.md §4.1), shared by the API, webhooks and Slack blocks."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.clock import iso
from bot.domain import EXPIRY_FEEDBACK, is_overdue

if TYPE_CHECKING:
    from storage.models import Request


def request_json(req: Request, *, now: datetime | None = None) -> dict[str, Any]:
    """``now`` makes a pending request past its deadline read as expired even before the sweep ran."""
    status = req.status
    decision: dict[str, Any] | None = None
    decided_at = req.decided_at
    if now is not None and is_overdue(status, req.expires_at, now):
        status = "expired"
        decided_at = req.expires_at
        decision = {
            "kind": "expire",
            "by": {"id": "scheduler", "name": "signoff", "via": "scheduler"},
            "at": iso(req.expires_at),
            "feedback": EXPIRY_FEEDBACK,  # what the sweep will store: the decision must not change
            "rule": req.rule,
        }
    elif req.decision_kind is not None:
        decision = {
            "kind": req.decision_kind,
            "by": {"id": req.decided_by_id, "name": req.decided_by_name, "via": req.decided_via},
            "at": iso(req.decided_at),
            "feedback": req.feedback,
            "rule": req.rule,
        }
    slack = None
    if req.slack_channel or req.slack_ts:
        slack = {"channel": req.slack_channel, "ts": req.slack_ts, "permalink": req.slack_permalink}
    final_args = req.final_args
    if final_args is None and status in ("approved", "modified"):
        final_args = req.args
    return {
        "id": req.id,
        "status": status,
        "action": {"tool": req.tool, "args": req.args},
        "final_args": final_args,
        "context": req.context or {},
        "risk": req.risk,
        "labels": sorted(lb.label for lb in req.labels),
        "agent": req.agent,
        "channel": req.channel,
        "reviewers": list(req.reviewers or []),
        "required_approvals": req.required_approvals,
        "approvals": [
            {
                "reviewer": {"id": a.reviewer_id, "name": a.reviewer_name},
                "at": iso(a.at),
                "version": a.version,
                "via": a.via,
            }
            for a in req.approvals
        ],
        "decision": decision,
        "created_at": iso(req.created_at),
        "expires_at": iso(req.expires_at),
        "decided_at": iso(decided_at),
        "result": req.result,
        "slack": slack,
        "version": req.version,
        "rule": req.rule,
        "callback_url": req.callback_url,
    }
