"""The audit trail's hash chain: each event carries the hash of the one before it.

``event_hash`` covers the event's sequence number, request, kind, actor, time and data, so editing any of
them, or deleting an event (a gap in ``seq``, a broken ``prev_hash`` link), is detected by ``signoff audit
verify``. Pure functions, shared by the writer and the verifier.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64


def _at(value: datetime) -> str:
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds")


def _canonical(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def event_hash(prev_hash: str, *, seq: int, request_id: str | None, kind: str, actor_id: str | None,
               actor_name: str | None, via: str | None, at: datetime, data: dict[str, Any]) -> str:
    body = _canonical({"seq": seq, "request_id": request_id, "kind": kind, "actor_id": actor_id,
                       "actor_name": actor_name, "via": via, "at": _at(at), "data": data})
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def body_around_seq(*, request_id: str | None, kind: str, actor_id: str | None, actor_name: str | None,
                    via: str | None, at: datetime, data: dict[str, Any]) -> tuple[str, str]:
    """The canonical body of ``event_hash`` as the text before and after the sequence number, for a writer that
    learns ``seq`` only under the chain's lock (PostgreSQL's ``signoff_append_audit``):
    ``event_hash(prev, seq=n, …) == sha256(prev + head + str(n) + tail)``.

    With sorted keys, ``seq`` comes after every other key but ``via``."""
    head = _canonical({"request_id": request_id, "kind": kind, "actor_id": actor_id, "actor_name": actor_name,
                       "at": _at(at), "data": data})
    return head[:-1] + ',"seq":', ',"via":' + json.dumps(via, ensure_ascii=False) + "}"
