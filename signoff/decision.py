"""The outcome of a request as the agent sees it, and the messages its model reads when it may not act."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from signoff.errors import ActionRejected, ApprovalCancelled, ApprovalExpired, NotApproved

TERMINAL = frozenset({"approved", "modified", "rejected", "expired", "cancelled"})
APPROVED = frozenset({"approved", "modified"})


@dataclass(frozen=True)
class DecidedBy:
    id: str | None
    name: str | None
    via: str | None  # slack | cli | api | policy | scheduler

    @property
    def label(self) -> str:
        return self.name or self.id or "a reviewer"


@dataclass(frozen=True)
class Decision:
    """A terminal request. ``final_args`` are the args to run with (the edited ones when ``modified``)."""

    request_id: str
    status: str
    final_args: dict[str, Any] | None
    feedback: str | None
    by: DecidedBy | None
    at: datetime | None
    rule: str | None
    request: dict[str, Any] = field(repr=False)

    @classmethod
    def from_request(cls, data: dict[str, Any]) -> Decision:
        status = data["status"]
        if status not in TERMINAL:
            raise ValueError(f"request {data.get('id')} is {status}, not decided")
        dec = data.get("decision") or {}
        by = dec.get("by")
        final_args = data.get("final_args")
        if final_args is None and status in APPROVED:
            final_args = (data.get("action") or {}).get("args")
        return cls(
            request_id=data["id"],
            status=status,
            final_args=final_args,
            feedback=dec.get("feedback"),
            by=DecidedBy(by.get("id"), by.get("name"), by.get("via")) if isinstance(by, dict) else None,
            at=parse_time(dec.get("at") or data.get("decided_at")),
            rule=dec.get("rule"),
            request=data,
        )

    @property
    def approved(self) -> bool:
        """True for ``approved`` and ``modified``: the action may run (with ``final_args``)."""
        return self.status in APPROVED

    @property
    def modified(self) -> bool:
        return self.status == "modified"

    @property
    def tool(self) -> str:
        return str((self.request.get("action") or {}).get("tool", "the action"))

    def check(self) -> Decision:
        """Return self when approved; otherwise raise the matching ``NotApproved`` error."""
        if self.approved:
            return self
        raise not_approved(self)


def not_approved(d: Decision) -> NotApproved:
    when = _hhmm(d.at)
    if d.status == "rejected":
        who = f"policy {d.rule!r}" if d.by and d.by.via == "policy" and d.rule else _who(d, "a reviewer")
        feedback = d.feedback or "(no reason given)"
        return ActionRejected(
            f"Rejected by {who}{when}: {feedback}\n"
            f"The {d.tool} action was not run (request {d.request_id}). Do not retry the same action "
            f"unchanged: change it to address this feedback, or ask the user how to proceed.",
            d,
        )
    if d.status == "expired":
        return ApprovalExpired(
            f"Approval expired{when}: nobody approved or rejected the {d.tool} action before its deadline, "
            f"so it was not run (request {d.request_id}). Tell the user it is still waiting for a human "
            f"decision, or ask them whether to submit it again.",
            d,
        )
    who = _who(d, "someone")
    reason = f": {d.feedback}" if d.feedback else ""
    return ApprovalCancelled(
        f"Cancelled by {who}{when}{reason}\nThe {d.tool} action was withdrawn before anyone decided, so it "
        f"was not run (request {d.request_id}).",
        d,
    )


def _who(d: Decision, default: str) -> str:
    return d.by.label if d.by else default


def _hhmm(at: datetime | None) -> str:
    return f" at {at.astimezone(UTC).strftime('%H:%M')} UTC" if at else ""


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
