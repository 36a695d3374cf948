"""Pure helpers that shape what goes over the wire: JSON-safe values, the submit body, list filters."""

from __future__ import annotations

import dataclasses
import enum
import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import PurePath
from typing import Any

RISKS = ("low", "medium", "high", "critical")
LIST_FILTERS = ("status", "label", "tool", "agent", "risk", "channel")


def jsonable(value: Any) -> Any:
    """A JSON-safe copy of ``value``: common Python types become their natural JSON form, anything else
    its ``repr`` (so a reviewer still sees something meaningful)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [jsonable(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, Decimal | uuid.UUID | PurePath):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    dump = getattr(value, "model_dump", None)  # pydantic models
    if callable(dump):
        return jsonable(dump(mode="json"))
    return repr(value)


def context_json(context: Mapping[str, Any] | str | None) -> dict[str, Any] | None:
    """A context dict; a plain string is taken as the summary."""
    if context is None:
        return None
    if isinstance(context, str):
        return {"summary": context}
    if not isinstance(context, Mapping):
        raise TypeError(f"context must be a dict or a string, got {type(context).__name__}")
    return jsonable(context)


def submit_body(
    tool: str,
    args: Mapping[str, Any],
    *,
    context: Mapping[str, Any] | str | None,
    risk: str,
    labels: Sequence[str] | None,
    timeout_s: int | None,
    channel: str | None,
    reviewers: Sequence[str] | None,
    required_approvals: int | None,
    callback_url: str | None,
    idempotency_key: str | None,
) -> dict[str, Any]:
    """The ``POST /v1/requests`` body. It always has an idempotency key, so retrying it never duplicates."""
    if not isinstance(args, Mapping):
        raise TypeError(f"args must be a dict of argument name to value, got {type(args).__name__}")
    if risk not in RISKS:
        raise ValueError(f"risk must be one of {', '.join(RISKS)}, got {risk!r}")
    if isinstance(labels, str) or isinstance(reviewers, str):
        raise TypeError("labels and reviewers are lists of strings, not a single string")
    body: dict[str, Any] = {"action": {"tool": tool, "args": jsonable(args)}, "risk": risk}
    optional: dict[str, Any] = {
        "context": context_json(context),
        "labels": list(labels) if labels else None,
        "timeout_s": timeout_s,
        "channel": channel,
        "reviewers": list(reviewers) if reviewers else None,
        "required_approvals": required_approvals,
        "callback_url": callback_url,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    body["idempotency_key"] = idempotency_key or str(uuid.uuid4())
    return body


def list_params(filters: Mapping[str, str | None], limit: int | None, cursor: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {k: v for k, v in filters.items() if v is not None}
    if limit is not None:
        params["limit"] = limit
    if cursor is not None:
        params["cursor"] = cursor
    return params


def request_path(request_id: str, action: str = "") -> str:
    if not isinstance(request_id, str) or not request_id or "/" in request_id:
        raise ValueError(f"not a request id: {request_id!r}")
    return f"/v1/requests/{request_id}" + (f"/{action}" if action else "")
