"""The hot write statements as synchronous functions over a Core ``Connection``.

A transaction built from these runs as one call: on SQLite in the database's writer thread (one hand-off per
transaction instead of several per statement), on PostgreSQL through ``AsyncConnection.run_sync``. The async
functions of ``storage.repository`` with the same names delegate here, so each statement exists once.
Functions take the caller's connection and never commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, text, update
from sqlalchemy.dialects import postgresql, sqlite

from storage.chain import GENESIS, event_hash
from storage.models import AuditEvent, Label, OutboxItem, PolicyBudget, Request

_AUDIT_LOCK = 0x5167_0A0D  # serialises appends to the hash chain across PostgreSQL replicas

_requests = cast(Table, Request.__table__)
_labels = cast(Table, Label.__table__)
_audit = cast(Table, AuditEvent.__table__)
_outbox = cast(Table, OutboxItem.__table__)
_budgets = cast(Table, PolicyBudget.__table__)


def is_pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _insert(conn: Connection, table: Table) -> Any:
    return postgresql.insert(table) if is_pg(conn) else sqlite.insert(table)


def insert_requests(conn: Connection, *, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert requests; a row whose (agent, idempotency_key) already exists is skipped. Returns inserted ids."""
    if not rows:
        return set()
    stmt = _insert(conn, _requests).on_conflict_do_nothing().returning(_requests.c.id)
    return {r[0] for group in _same_keys(rows) for r in conn.execute(stmt, group).all()}


def insert_labels(conn: Connection, *, pairs: Iterable[tuple[str, str]]) -> None:
    values = [{"request_id": rid, "label": label} for rid, label in pairs]
    if values:
        conn.execute(_insert(conn, _labels).on_conflict_do_nothing(), values)


def add_audit(conn: Connection, *, events: Sequence[dict[str, Any]]) -> None:
    """Append events to the hash chain: each gets the next ``seq`` and the hash of the one before."""
    if not events:
        return
    if is_pg(conn):
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _AUDIT_LOCK})
    last = conn.execute(text("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")).first()
    seq, prev = (int(last[0]), str(last[1])) if last is not None and last[0] is not None else (0, GENESIS)
    rows = []
    for event in events:
        seq += 1
        digest = event_hash(prev, seq=seq, request_id=event.get("request_id"), kind=event["kind"],
                            actor_id=event.get("actor_id"), actor_name=event.get("actor_name"),
                            via=event.get("via"), at=event["at"], data=event.get("data") or {})
        rows.append({**event, "seq": seq, "prev_hash": prev, "hash": digest})
        prev = digest
    for group in _same_keys(rows):
        conn.execute(_audit.insert(), group)


def add_outbox(conn: Connection, *, items: Sequence[dict[str, Any]]) -> None:
    """Queue outgoing work; an item whose ``key`` is already queued is not queued twice."""
    for group in _same_keys(items):
        conn.execute(_insert(conn, _outbox).on_conflict_do_nothing(), group)


def take_budget(conn: Connection, *, rule: str, agent: str, window_start: datetime, maximum: int) -> bool:
    """Count one use against a budget window, atomically; False when the window is already used up."""
    stmt = (
        _insert(conn, _budgets)
        .values(rule=rule, agent=agent, window_start=window_start, used=1)
        .on_conflict_do_update(
            index_elements=[_budgets.c.rule, _budgets.c.agent, _budgets.c.window_start],
            set_={"used": _budgets.c.used + 1},
            where=_budgets.c.used < maximum,
        )
        .returning(_budgets.c.used)
    )
    return conn.execute(stmt).first() is not None


def finalise_at_submit(conn: Connection, *, request_id: str, values: dict[str, Any]) -> bool:
    """A request decided while it is being submitted (a budget slot): pending → ``values``, if still pending."""
    stmt = update(_requests).where(_requests.c.id == request_id, _requests.c.status == "pending").values(**values)
    return conn.execute(stmt).rowcount == 1


def _same_keys(rows: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Rows grouped by their set of keys, in order of first appearance: an executemany takes its columns from
    the first row, and a column left out must get its default rather than NULL."""
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(frozenset(row), []).append(row)
    return list(groups.values())
