"""Reading the audit trail: verify its hash chain, export it as JSON Lines or CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from bot.clock import iso
from storage import repository as repo
from storage.chain import GENESIS, event_hash
from storage.db import Database
from storage.models import AuditEvent

PAGE = 2000
CSV_FIELDS = ["seq", "at", "request_id", "kind", "actor_id", "actor_name", "via", "data", "prev_hash", "hash"]


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    problem: str | None = None
    seq: int | None = None


async def _events(db: Database, since: datetime | None = None) -> AsyncIterator[AuditEvent]:
    after = 0
    while True:
        async with db.read() as s:
            page = await repo.audit_page(s, after_seq=after, limit=PAGE, since=since)
        if not page:
            return
        for ev in page:
            yield ev
        after = int(page[-1].seq or 0)


async def verify_chain(db: Database) -> ChainReport:
    """Walk the chain from the first event; report the first edited, missing or re-linked event."""
    expected_seq, prev, checked = 1, GENESIS, 0
    async for ev in _events(db):
        seq = int(ev.seq or 0)
        if seq != expected_seq:
            missing = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}-{seq - 1}"
            return ChainReport(False, checked, f"event(s) {missing} are missing (deleted) before event {seq}",
                               expected_seq)
        if ev.prev_hash != prev:
            return ChainReport(False, checked, f"event {seq} does not link to event {seq - 1} (prev_hash differs)",
                               seq)
        digest = event_hash(prev, seq=seq, request_id=ev.request_id, kind=ev.kind, actor_id=ev.actor_id,
                            actor_name=ev.actor_name, via=ev.via, at=ev.at, data=ev.data or {})
        if digest != ev.hash:
            return ChainReport(False, checked, f"event {seq} ({ev.kind}, request {ev.request_id}) was modified: "
                                               "its contents do not match its hash", seq)
        prev, expected_seq, checked = digest, seq + 1, checked + 1
    return ChainReport(True, checked)


def _row(ev: AuditEvent) -> dict[str, object]:
    return {"seq": ev.seq, "at": iso(ev.at), "request_id": ev.request_id, "kind": ev.kind, "actor_id": ev.actor_id,
            "actor_name": ev.actor_name, "via": ev.via, "data": ev.data, "prev_hash": ev.prev_hash, "hash": ev.hash}


async def export_lines(db: Database, *, fmt: str, since: datetime | None = None) -> AsyncIterator[str]:
    """Lines (each ending in a newline) of the trail in ``jsonl`` or ``csv``."""
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        yield buf.getvalue()
        async for ev in _events(db, since):
            buf.seek(0)
            buf.truncate()
            row = _row(ev)
            row["data"] = json.dumps(row["data"], sort_keys=True, ensure_ascii=False)
            writer.writerow(row)
            yield buf.getvalue()
        return
    async for ev in _events(db, since):
        yield json.dumps(_row(ev), ensure_ascii=False, sort_keys=True) + "\n"
