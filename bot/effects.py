"""Side effects planned as outbox rows, written in the same transaction as the change that causes them.

An ``Effects`` implementation looks at the public JSON of a request after a change and returns the outbox
rows to queue (a webhook, a Slack card, a card update…). The outbox worker delivers them later, at least
once, so nothing is lost when the process dies or a remote end is down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from bot.domain import is_terminal


@dataclass(frozen=True)
class OutboxRow:
    kind: str
    key: str  # unique: the same key is never queued twice (e.g. one card per request)
    payload: dict[str, Any]
    request_id: str | None = None
    not_before: datetime | None = None

    def to_row(self, now: datetime) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "payload": self.payload,
            "request_id": self.request_id,
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": self.not_before or now,
        }


@dataclass(frozen=True)
class Change:
    """What just happened to a request: an audit kind such as ``created``, ``approved`` or ``labels``."""

    kind: str
    request: dict[str, Any]
    seq: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Effects(Protocol):
    def plan(self, change: Change) -> list[OutboxRow]: ...


class WebhookEffects:
    """A ``callback_url`` webhook on every terminal decision (one per request and final status)."""

    KIND = "webhook"

    def plan(self, change: Change) -> list[OutboxRow]:
        req = change.request
        url = req.get("callback_url")
        if not url or not is_terminal(req["status"]) or change.kind in ("labels", "result"):
            return []
        event_type = f"request.{req['status']}"
        body = {"type": event_type, "timestamp": req.get("decided_at"), "data": public_request(req)}
        msg_id = f"msg_{req['id']}_{req['status']}"
        return [OutboxRow(kind=self.KIND, key=msg_id, request_id=req["id"],
                          payload={"url": url, "id": msg_id, "body": body})]


def public_request(req: dict[str, Any]) -> dict[str, Any]:
    """The request JSON as agents see it (the callback URL stays private to the server)."""
    return {k: v for k, v in req.items() if k != "callback_url"}
