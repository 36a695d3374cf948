"""The hot write statements as synchronous functions over a Core ``Connection``.

A transaction built from these runs as one call: on SQLite in the database's writer thread (one hand-off per
transaction instead of several per statement), on PostgreSQL through ``AsyncConnection.run_sync``. The async
functions of ``storage.repository`` with the same names delegate here, so each statement exists once.
Functions take the caller's connection and never commit.

The bulk inserts are compiled once per dialect from the models' tables and run as one DBAPI ``executemany``
with each column's own bind processor (JSON, UTC times) applied to plain tuples: the same SQL and values
SQLAlchemy would send, without building its parameter dictionaries row by row (most of a submission's cost).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Column, Connection, Table, bindparam, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from storage.chain import GENESIS, body_around_seq, event_hash
from storage.db import json_dumps
from storage.models import Approval, AuditEvent, Label, OutboxItem, PolicyBudget, Request, UTCDateTime

_requests = cast(Table, Request.__table__)
_labels = cast(Table, Label.__table__)
_audit = cast(Table, AuditEvent.__table__)
_outbox = cast(Table, OutboxItem.__table__)
_budgets = cast(Table, PolicyBudget.__table__)

# Which of these request ids exist (SQLite, inside the write transaction).
_IDS_PRESENT = select(_requests.c.id).where(_requests.c.id.in_(bindparam("ids", expanding=True)))


def is_pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def dialect_insert(dialect: str, table: Any) -> Any:
    """The dialect's INSERT construct (the one with ``on_conflict_do_nothing``)."""
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


def _insert(conn: Connection, table: Table) -> Any:
    return dialect_insert(conn.dialect.name, table)


def insert_requests(conn: Connection, *, rows: Sequence[dict[str, Any]],
                    labels: Sequence[tuple[str, str]] = ()) -> set[str]:
    """Insert requests, and ``labels`` (request id, label) of those inserted; a row whose (agent,
    idempotency_key) already exists is skipped, with its labels. Returns the ids inserted.

    ON CONFLICT DO NOTHING: on PostgreSQL a replica inserting the same key meanwhile makes the insert wait for
    that commit, then skip. PostgreSQL takes a batch as one statement: a multi-row INSERT … RETURNING with the
    labels' INSERT in the same statement (per-row executes cost its server several times the CPU, and every
    round trip is one more wait). SQLite takes an ``executemany``, after which the new ids that are present are
    the ones inserted (nothing else can write while this transaction holds the write lock)."""
    if not rows:
        return set()
    if is_pg(conn):
        by_request: dict[str, list[str]] = {}
        for rid, label in labels:
            by_request.setdefault(rid, []).append(label)
        inserted: set[str] = set()
        for start in range(0, len(rows), PG_ROWS_PER_INSERT):
            chunk = rows[start : start + PG_ROWS_PER_INSERT]
            pairs = [(row["id"], label) for row in chunk for label in by_request.get(row["id"], ())]
            inserted |= _pg_batch(conn, chunk, pairs, (), None)
        return inserted
    ids = [r["id"] for r in rows]
    if _bulk(conn, _requests, rows, skip_conflicts=True) == len(rows):  # sqlite3 sums an executemany's changes
        inserted = set(ids)
    else:
        inserted = set(conn.execute(_IDS_PRESENT, {"ids": ids}).scalars())
    insert_labels(conn, pairs=[(rid, label) for rid, label in labels if rid in inserted])
    return inserted


def pg_intake(conn: Connection, *, rows: Sequence[dict[str, Any]], labels: Sequence[tuple[str, str]],
              outbox: Sequence[tuple[str, dict[str, Any]]], events: Sequence[dict[str, Any]]) -> set[str]:
    """PostgreSQL: a batch of new requests as one statement, one round trip. Inserts the requests (skipping a
    known idempotency key, as ``insert_requests``), and for those inserted their ``labels`` (request id, label),
    their ``outbox`` rows (request id, row) and their audit ``events`` (through ``signoff_append_audit``, which
    takes the chain's lock once the requests are in, so no other lock is waited for while it is held).
    Returns the ids inserted. At most ``PG_ROWS_PER_INSERT`` rows."""
    assert is_pg(conn) and 0 < len(rows) <= PG_ROWS_PER_INSERT
    return _pg_batch(conn, rows, labels, outbox, events)


PG_ROWS_PER_INSERT = 500  # 500 rows of the requests table stay well under PostgreSQL's 32,767 parameters
_pg_batch_sql: dict[tuple[int, bool, bool, bool], str] = {}


def _pg_batch(conn: Connection, rows: Sequence[dict[str, Any]], labels: Sequence[tuple[str, str]],
              outbox: Sequence[tuple[str, dict[str, Any]]], events: Sequence[dict[str, Any]] | None) -> set[str]:
    """The one statement of ``insert_requests`` and ``pg_intake``: a multi-row INSERT … RETURNING of the
    requests as ``r``; the labels and outbox rows of those in ``r`` inserted from one array per column (a
    data-modifying WITH: their foreign keys see the requests of the same statement); with ``events``, the audit
    events of those in ``r`` appended last. The SQL depends only on the shape of the batch, and is built once
    per shape."""
    ins = _compiled_insert(conn, _requests, True)
    owned = [(_labels, [(rid, {"request_id": rid, "label": lb}) for rid, lb in labels]), (_outbox, outbox)]
    key = (len(rows), bool(labels), bool(outbox), events is not None)
    sql = _pg_batch_sql.get(key)
    if sql is None:
        sql = _pg_batch_sql[key] = _pg_batch_statement(conn, ins, key)
    params: list[Any] = [v for row in rows for v in ins.params(row)]
    for table, items in owned:
        if items:
            params += _pg_columns(_compiled_insert(conn, table, True), items)
    if events is None:
        return {r[0] for r in _fetch(conn, sql, params)}
    return set(_fetch(conn, sql, params + _pg_audit_columns(conn, events))[0][0])


def _pg_batch_statement(conn: Connection, ins: _Insert, key: tuple[int, bool, bool, bool]) -> str:
    rows, labels, outbox, audit = key
    width = len(ins.columns)
    values = ", ".join("(" + ", ".join(f"${r * width + c + 1}" for c in range(width)) + ")" for r in range(rows))
    columns = ", ".join(f'"{c.name}"' for c in ins.columns)
    ctes = [f'r AS (INSERT INTO "{_requests.name}" ({columns}) VALUES {values} ON CONFLICT DO NOTHING RETURNING id)']
    n = rows * width  # parameters so far
    for name, table, present in (("l", _labels, labels), ("o", _outbox, outbox)):
        if present:
            owned = _compiled_insert(conn, table, True)
            types = [*owned.array_types, "VARCHAR[]"]  # the last: the id of the request owning the row
            names = ", ".join(f'"{c.name}"' for c in owned.columns)
            picked = ", ".join(f'x."{c.name}"' for c in owned.columns)
            arrays = ", ".join(f"${n + i}::{t}" for i, t in enumerate(types, start=1))
            ctes.append(f'{name} AS (INSERT INTO "{table.name}" ({names}) SELECT {picked} FROM unnest({arrays}) '
                        f"AS x({names}, signoff_owner) JOIN r ON r.id = x.signoff_owner ON CONFLICT DO NOTHING)")
            n += len(types)
    if not audit:
        return f"WITH {', '.join(ctes)} SELECT id FROM r"
    return (f"WITH {', '.join(ctes)}, ids AS (SELECT coalesce(array_agg(id), '{{}}') AS ids FROM r) "
            f"SELECT ids.ids, signoff_append_audit({_audit_args(n)}, ids.ids) FROM ids")


def _pg_columns(ins: _Insert, owned: Sequence[tuple[str, dict[str, Any]]]) -> list[list[Any]]:
    """Rows as one array per column (the bind processors applied), then the array of their owners' ids."""
    columns: list[list[Any]] = [[] for _ in range(len(ins.columns) + 1)]
    for owner, row in owned:
        for column, value in zip(columns, [*ins.params(row), owner], strict=True):
            column.append(value)
    return columns


def insert_labels(conn: Connection, *, pairs: Iterable[tuple[str, str]]) -> None:
    _bulk(conn, _labels, [{"request_id": rid, "label": label} for rid, label in pairs], skip_conflicts=True)


def add_audit(conn: Connection, *, events: Sequence[dict[str, Any]]) -> None:
    """Append events to the hash chain: each gets the next ``seq`` and the hash of the one before.

    On PostgreSQL one call of ``signoff_append_audit`` (migration 0006) takes the chain's advisory lock (held to
    the commit, so replicas append one at a time), reads the head and inserts the events it numbers and hashes
    from the bodies sent here; on SQLite, whose writer is alone, the head is read and the hashes are computed
    here."""
    if not events:
        return
    if is_pg(conn):
        _pg_append_audit(conn, events)
        return
    head = _fetch(conn, _AUDIT_HEAD, ())
    seq, prev = (int(head[0][0]), str(head[0][1])) if head else (0, GENESIS)
    rows = []
    for event in events:
        seq += 1
        digest = event_hash(prev, seq=seq, request_id=event.get("request_id"), kind=event["kind"],
                            actor_id=event.get("actor_id"), actor_name=event.get("actor_name"),
                            via=event.get("via"), at=event["at"], data=event.get("data") or {})
        rows.append({**event, "seq": seq, "prev_hash": prev, "hash": digest})
        prev = digest
    _bulk(conn, _audit, rows)


_AUDIT_HEAD = "SELECT seq, hash FROM audit_events WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1"
_utc = UTCDateTime()


def _pg_append_audit(conn: Connection, events: Sequence[dict[str, Any]]) -> None:
    _fetch(conn, f"SELECT signoff_append_audit({_audit_args(0)})", _pg_audit_columns(conn, events))


def _audit_args(n: int) -> str:
    return ", ".join(f"${n + i}::{t}" for i, t in enumerate(
        ("varchar[]", "varchar[]", "varchar[]", "varchar[]", "varchar[]", "timestamptz[]", "text[]", "text[]",
         "text[]"), start=1))


def _pg_audit_columns(conn: Connection, events: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """``signoff_append_audit``'s arguments: one array per column, each event's body split around ``seq``."""
    columns: list[list[Any]] = [[] for _ in range(9)]
    for e in events:
        data = e.get("data") or {}
        head, tail = body_around_seq(request_id=e.get("request_id"), kind=e["kind"], actor_id=e.get("actor_id"),
                                     actor_name=e.get("actor_name"), via=e.get("via"), at=e["at"], data=data)
        values = (e.get("request_id"), e["kind"], e.get("actor_id"), e.get("actor_name"), e.get("via"),
                  _utc.process_bind_param(e["at"], conn.dialect), json_dumps(data), head, tail)
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns


def _fetch(conn: Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    """Run final SQL (the driver's parameter style: ``$n`` on PostgreSQL, ``?`` on SQLite) on the driver's
    cursor: no per-execution work in SQLAlchemy."""
    with _cursor(conn) as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


@contextmanager
def _cursor(conn: Connection) -> Iterator[Any]:
    """The driver's own cursor on ``conn``: for final SQL, SQLAlchemy's per-execution context adds nothing."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        yield cursor
    finally:
        cursor.close()


def add_outbox(conn: Connection, *, items: Sequence[dict[str, Any]]) -> None:
    """Queue outgoing work; an item whose ``key`` is already queued is not queued twice."""
    _bulk(conn, _outbox, items, skip_conflicts=True)


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


def _sqlite_utc(value: datetime) -> str:
    """``UTCDateTime`` on SQLite as SQLAlchemy's DATETIME stores it (``YYYY-MM-DD HH:MM:SS.ffffff``, UTC), in
    one C call instead of two Python processors."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the database; use the injected clock")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


class _Insert:
    """An INSERT of every column but a generated key, compiled for one dialect, with the bind processors."""

    def __init__(self, table: Table, dialect: Dialect, skip_conflicts: bool) -> None:
        auto = table.autoincrement_column
        self.columns: list[Column[Any]] = [c for c in table.columns if c is not auto]
        stmt: Any = insert(table)
        if skip_conflicts:
            stmt = dialect_insert(dialect.name, table).on_conflict_do_nothing()
        compiled = stmt.compile(dialect=dialect, column_keys=[c.key for c in self.columns])
        order = {c.key: c for c in self.columns}
        assert compiled.positiontup is not None and set(compiled.positiontup) == set(order)
        self.columns = [order[k] for k in compiled.positiontup]
        self.sql = str(compiled)
        self.keys = [(c.key, c.default.arg if c.default is not None and c.default.is_scalar else None)  # type: ignore[attr-defined]
                     for c in self.columns]
        processors = [_sqlite_utc if dialect.name == "sqlite" and isinstance(c.type, UTCDateTime)
                      else c.type.dialect_impl(dialect).bind_processor(dialect) for c in self.columns]
        self.processors = [(i, proc) for i, proc in enumerate(processors) if proc is not None]
        # PostgreSQL: each column's type as an array, without a length (an explicit cast to VARCHAR(n) would cut
        # a longer value short, where the INSERT's own conversion refuses it, as any other insert does).
        self.array_types = [re.sub(r"\(\d+\)", "", c.type.compile(dialect=dialect)) + "[]"
                            for c in self.columns] if dialect.name == "postgresql" else []

    def params(self, row: dict[str, Any]) -> list[Any]:
        values = [row.get(key, default) for key, default in self.keys]
        for i, proc in self.processors:
            value = values[i]
            if value is not None:  # None is stored as SQL NULL, also in JSON columns
                values[i] = proc(value)
        return values


_compiled: dict[tuple[str, str, bool], _Insert] = {}


def _compiled_insert(conn: Connection, table: Table, skip_conflicts: bool) -> _Insert:
    key = (conn.dialect.name, table.name, skip_conflicts)
    ins = _compiled.get(key)
    if ins is None:
        ins = _compiled[key] = _Insert(table, conn.dialect, skip_conflicts)
    return ins


def _bulk(conn: Connection, table: Table, rows: Sequence[dict[str, Any]], *, skip_conflicts: bool = False) -> int:
    """Insert ``rows``; the number inserted as the driver reports it (-1 where it does not)."""
    if not rows:
        return 0
    ins = _compiled_insert(conn, table, skip_conflicts)
    with _cursor(conn) as cursor:
        cursor.executemany(ins.sql, [ins.params(r) for r in rows])
        return int(cursor.rowcount)


# --- decisions ------------------------------------------------------------------------------------------------

_approvals = cast(Table, Approval.__table__)


def request_row(conn: Connection, *, request_id: str, for_update: bool = False) -> dict[str, Any] | None:
    """A request's columns, read in the caller's transaction; locked against concurrent deciders on PostgreSQL
    (SQLite's write transaction already excludes them)."""
    stmt = select(_requests).where(_requests.c.id == request_id)
    if for_update and is_pg(conn):
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).mappings().first()
    return None if row is None else dict(row)


def request_view(conn: Connection, *, request_id: str) -> RequestView | None:
    """A request's columns with its labels and approvals (plain rows), read in the caller's transaction."""
    row = request_row(conn, request_id=request_id)
    if row is None:
        return None
    labels = list(conn.execute(select(_labels.c.label).where(_labels.c.request_id == request_id)
                               .order_by(_labels.c.label)).scalars())
    approvals = list(conn.execute(select(_approvals).where(_approvals.c.request_id == request_id)
                                  .order_by(_approvals.c.id)).all())
    return RequestView(row, labels, approvals)


class RequestView:
    """A request read by ``request_view``: ``row`` (column → value), ``labels`` and ``approvals``."""

    __slots__ = ("approvals", "labels", "row")

    def __init__(self, row: dict[str, Any], labels: list[str], approvals: list[Any]) -> None:
        self.row, self.labels, self.approvals = row, labels, approvals


def add_approval(conn: Connection, *, request_id: str, version: int, reviewer_id: str, reviewer_name: str,
                 via: str, at: datetime) -> None:
    conn.execute(_insert(conn, _approvals).on_conflict_do_nothing(), [dict(
        request_id=request_id, version=version, reviewer_id=reviewer_id, reviewer_name=reviewer_name, via=via,
        at=at)])


def approvers_of(conn: Connection, *, request_id: str, version: int) -> list[str]:
    stmt = select(_approvals.c.reviewer_id).where(_approvals.c.request_id == request_id,
                                                  _approvals.c.version == version)
    return list(conn.execute(stmt).scalars())


def cas_finalise(conn: Connection, *, request_id: str, status: str, kind: str, by_id: str | None,
                 by_name: str | None, via: str, at: datetime, feedback: str | None = None,
                 final_args: dict[str, Any] | None = None, version: int | None = None,
                 new_version: int | None = None, rule: str | None = None) -> bool:
    """pending → terminal, only if still pending (and still at ``version`` when given). True if we won."""
    values: dict[str, Any] = dict(status=status, decision_kind=kind, decided_by_id=by_id, decided_by_name=by_name,
                                  decided_via=via, decided_at=at, feedback=feedback)
    if final_args is not None:
        values["final_args"] = final_args
    if new_version is not None:
        values["version"] = new_version
    if rule is not None:
        values["rule"] = rule
    stmt = update(_requests).where(_requests.c.id == request_id, _requests.c.status == "pending")
    if version is not None:
        stmt = stmt.where(_requests.c.version == version)
    return conn.execute(stmt.values(**values)).rowcount == 1


def cas_new_version(conn: Connection, *, request_id: str, version: int, args: dict[str, Any]) -> bool:
    """An edit below quorum: the args change and the version bumps, only if nobody else moved first."""
    stmt = (update(_requests)
            .where(_requests.c.id == request_id, _requests.c.status == "pending", _requests.c.version == version)
            .values(final_args=args, version=version + 1))
    return conn.execute(stmt).rowcount == 1


def notify(conn: Connection, *, channel: str, payload: str) -> None:
    """PostgreSQL NOTIFY, delivered to listeners when the transaction commits."""
    if is_pg(conn):
        conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": channel, "p": payload})
