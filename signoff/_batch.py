"""Pure helpers for server-side batches (``POST /v1/batches``): the item and batch bodies, and the long poll."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from signoff._wire import context_json, submit_body

MAX_ITEMS = 100  # the server takes up to 100 actions per batch
ITEM_FIELDS = ("context", "risk", "labels", "timeout_s", "channel", "reviewers", "required_approvals",
               "callback_url")
SHARED_FIELDS = ITEM_FIELDS


def _check(fields: Mapping[str, Any], what: str) -> None:
    unknown = sorted(set(fields) - set(ITEM_FIELDS))
    if unknown:
        raise TypeError(f"{what} got unexpected argument(s): {', '.join(unknown)}; "
                        f"allowed: {', '.join(ITEM_FIELDS)}")


def batch_item(tool: str, args: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """One action of a batch: a request body without idempotency key (the batch has one), and without the
    fields the caller left out, so the batch's shared values apply to them."""
    _check(fields, "add()")
    given = {k: fields.get(k) for k in ITEM_FIELDS if k != "risk"}
    body = submit_body(tool, args, risk=fields.get("risk") or "medium", idempotency_key=None, **given)
    del body["idempotency_key"]
    if "risk" not in fields:
        del body["risk"]
    return body


def batch_bodies(items: Sequence[dict[str, Any]], shared: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """``POST /v1/batches`` bodies for ``items``, at most ``MAX_ITEMS`` each, each with its own idempotency key
    (so a retried submit never creates a second batch)."""
    _check(shared, "batch()")
    common: dict[str, Any] = {k: v for k, v in shared.items() if v is not None}
    if "context" in common:
        common["context"] = context_json(common["context"])
    for key in ("labels", "reviewers"):
        if key in common:
            if isinstance(common[key], str):
                raise TypeError(f"{key} is a list of strings, not a single string")
            common[key] = list(common[key])
    for start in range(0, len(items), MAX_ITEMS):
        yield {"actions": list(items[start : start + MAX_ITEMS]), **common, "idempotency_key": str(uuid.uuid4())}


def next_poll(end: float | None, long_poll_s: float) -> float | None:
    """Seconds for the next batch long poll, or None when the overall timeout is used up."""
    if end is None:
        return long_poll_s
    remaining = end - time.monotonic()
    return None if remaining <= 0 else min(long_poll_s, remaining)


def wait_params(poll: float) -> dict[str, str]:
    return {"timeout_s": f"{poll:.3f}".rstrip("0").rstrip(".")}
