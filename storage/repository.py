"""All SQL of signoff. Every state change is one conditional UPDATE (compare-and-set) on the request row.

Functions take the session of the caller's transaction and keyword-only arguments; they never commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, any_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from storage import writes
from storage.models import (
    ApiToken,
    Approval,
    AuditEvent,
    DigestRun,
    GrantRow,
    KeyValue,
    Label,
    OutboxItem,
    Request,
)


def _insert(session: AsyncSession, table: Any) -> Any:
    return writes.dialect_insert(session.bind.dialect.name, table)  # type: ignore[union-attr]


def _is_pg(session: AsyncSession) -> bool:
    return session.bind.dialect.name == "postgresql"  # type: ignore[union-attr]


# --- requests ------------------------------------------------------------------------------------------


async def insert_requests(session: AsyncSession, *, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert requests; a row whose (agent, idempotency_key) already exists is skipped. Returns inserted ids."""
    return await session.run_sync(lambda s: writes.insert_requests(s.connection(), rows=rows))


async def insert_labels(session: AsyncSession, *, pairs: Iterable[tuple[str, str]]) -> None:
    pairs = list(pairs)
    if pairs:
        await session.run_sync(lambda s: writes.insert_labels(s.connection(), pairs=pairs))


async def delete_labels(session: AsyncSession, *, request_id: str, labels: Iterable[str]) -> None:
    labels = list(labels)
    if labels:
        await session.execute(
            delete(Label).where(Label.request_id == request_id, Label.label.in_(labels))
        )


async def get_request(session: AsyncSession, *, request_id: str, for_update: bool = False) -> Request | None:
    """One request with its labels and approvals, in one statement (joined, not the three a select-in load
    takes: a click reads a request up to three times). Locked against concurrent deciders on PostgreSQL."""
    stmt = (select(Request).where(Request.id == request_id)
            .options(joinedload(Request.labels), joinedload(Request.approvals))
            .execution_options(populate_existing=True))
    if for_update and _is_pg(session):
        stmt = stmt.with_for_update(of=Request)
    return (await session.execute(stmt)).unique().scalar_one_or_none()


async def find_by_idempotency(
    session: AsyncSession, *, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], Request]:
    keys = list(keys)
    if not keys:
        return {}
    conds = [and_(Request.agent == a, Request.idempotency_key == k) for a, k in keys]
    rows = (await session.execute(select(Request).where(or_(*conds)))).scalars().all()
    return {(r.agent, r.idempotency_key or ""): r for r in rows}


@dataclass(frozen=True)
class ListFilter:
    status: str | None = None
    label: str | None = None
    tool: str | None = None
    agent: str | None = None
    risk: str | None = None
    channel: str | None = None


async def list_requests(
    session: AsyncSession, *, filt: ListFilter, now: datetime, limit: int, before_id: str | None
) -> list[Request]:
    """Newest first; ``before_id`` is the cursor (ids sort by creation time)."""
    stmt = select(Request)
    if filt.status == "pending":
        stmt = stmt.where(Request.status == "pending", Request.expires_at > now)
    elif filt.status is not None:
        stmt = stmt.where(Request.status == filt.status)
    if filt.label is not None:
        stmt = stmt.where(
            Request.id.in_(select(Label.request_id).where(Label.label == filt.label))
        )
    if filt.tool is not None:
        stmt = stmt.where(Request.tool == filt.tool)
    if filt.agent is not None:
        stmt = stmt.where(Request.agent == filt.agent)
    if filt.risk is not None:
        stmt = stmt.where(Request.risk == filt.risk)
    if filt.channel is not None:
        stmt = stmt.where(Request.channel == filt.channel)
    if before_id is not None:
        stmt = stmt.where(Request.id < before_id)
    stmt = stmt.order_by(Request.id.desc()).limit(limit)
    return list((await session.execute(stmt)).scalars().all())


async def set_result(session: AsyncSession, *, request_id: str, result: dict[str, Any]) -> bool:
    stmt = (
        update(Request)
        .where(Request.id == request_id, Request.status.in_(("approved", "modified")))
        .values(result=result)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(stmt)).rowcount == 1  # type: ignore[attr-defined]


async def recently_decided(session: AsyncSession, *, since: datetime) -> list[str]:
    stmt = select(Request.id).where(Request.decided_at >= since)
    return [r[0] for r in (await session.execute(stmt)).all()]


async def count_by_status(session: AsyncSession, *, now: datetime) -> dict[str, int]:
    stmt = select(Request.status, func.count()).group_by(Request.status)
    counts = {status: n for status, n in (await session.execute(stmt)).all()}
    overdue = (
        await session.execute(
            select(func.count()).where(Request.status == "pending", Request.expires_at <= now)
        )
    ).scalar_one()
    if overdue:
        counts["pending"] = counts.get("pending", 0) - overdue
        counts["expired"] = counts.get("expired", 0) + overdue
    return counts


async def next_expiry(session: AsyncSession) -> datetime | None:
    stmt = select(func.min(Request.expires_at)).where(Request.status == "pending")
    return (await session.execute(stmt)).scalar_one_or_none()


# --- audit -----------------------------------------------------------------------------------------------


async def add_audit(session: AsyncSession, *, events: Sequence[dict[str, Any]]) -> None:
    """Append events to the hash chain: each gets the next ``seq`` and the hash of the one before."""
    if events:
        await session.run_sync(lambda s: writes.add_audit(s.connection(), events=events))


async def audit_page(
    session: AsyncSession, *, after_seq: int, limit: int, since: datetime | None = None
) -> list[AuditEvent]:
    stmt = select(AuditEvent).where(AuditEvent.seq > after_seq).order_by(AuditEvent.seq).limit(limit)
    if since is not None:
        stmt = stmt.where(AuditEvent.at >= since)
    return list((await session.execute(stmt)).scalars().all())


async def audit_for(session: AsyncSession, *, request_id: str) -> list[AuditEvent]:
    stmt = select(AuditEvent).where(AuditEvent.request_id == request_id).order_by(AuditEvent.seq)
    return list((await session.execute(stmt)).scalars().all())


# --- outbox ---------------------------------------------------------------------------------------------


async def add_outbox(session: AsyncSession, *, items: Sequence[dict[str, Any]]) -> None:
    """Queue outgoing work; an item whose ``key`` is already queued is not queued twice."""
    if items:
        await session.run_sync(lambda s: writes.add_outbox(s.connection(), items=items))


async def claim_outbox(
    session: AsyncSession, *, now: datetime, limit: int, lease_s: float, kinds: Sequence[str]
) -> list[OutboxItem]:
    """Lease due items to this worker: other workers skip them until the lease runs out."""
    due = (
        select(OutboxItem.id)
        .where(
            OutboxItem.delivered_at.is_(None),
            OutboxItem.dead_at.is_(None),
            OutboxItem.next_attempt_at <= now,
            OutboxItem.kind.in_(kinds),
            or_(OutboxItem.locked_until.is_(None), OutboxItem.locked_until <= now),
        )
        .order_by(OutboxItem.id)
        .limit(limit)
    )
    stmt = (
        update(OutboxItem)
        .where(*_claimed(session, OutboxItem.id, _locked(session, due)))
        .values(locked_until=now + timedelta(seconds=lease_s), attempts=OutboxItem.attempts + 1)
        .returning(OutboxItem.id)
        .execution_options(synchronize_session=False)
    )
    ids = [r[0] for r in (await session.execute(stmt)).all()]
    if not ids:
        return []
    rows = await session.execute(
        select(OutboxItem).where(OutboxItem.id.in_(ids)).order_by(OutboxItem.id)
        .execution_options(populate_existing=True)
    )
    return list(rows.scalars().all())


async def outbox_delivered(session: AsyncSession, *, item_id: int, at: datetime) -> None:
    await session.execute(
        update(OutboxItem).where(OutboxItem.id == item_id)
        .values(delivered_at=at, locked_until=None, last_error=None)
    )


async def outbox_retry(
    session: AsyncSession, *, item_id: int, next_attempt_at: datetime, error: str
) -> None:
    await session.execute(
        update(OutboxItem).where(OutboxItem.id == item_id)
        .values(next_attempt_at=next_attempt_at, locked_until=None, last_error=error[:2000])
    )


async def outbox_defer(session: AsyncSession, *, item_id: int, next_attempt_at: datetime) -> None:
    """Put an item back without counting the claim as an attempt."""
    await session.execute(
        update(OutboxItem).where(OutboxItem.id == item_id)
        .values(next_attempt_at=next_attempt_at, locked_until=None, attempts=OutboxItem.attempts - 1)
    )


async def outbox_release(session: AsyncSession, *, item_ids: Sequence[int]) -> None:
    """Give leased items back (a worker shutting down); the interrupted claim does not count as an attempt."""
    await session.execute(
        update(OutboxItem)
        .where(OutboxItem.id.in_(list(item_ids)), OutboxItem.delivered_at.is_(None), OutboxItem.dead_at.is_(None))
        .values(locked_until=None, attempts=OutboxItem.attempts - 1)
    )


async def outbox_dead(session: AsyncSession, *, item_id: int, at: datetime, error: str) -> None:
    await session.execute(
        update(OutboxItem).where(OutboxItem.id == item_id)
        .values(dead_at=at, locked_until=None, last_error=error[:2000])
    )


async def next_outbox_due(session: AsyncSession, *, kinds: Sequence[str]) -> datetime | None:
    stmt = select(func.min(OutboxItem.next_attempt_at)).where(
        OutboxItem.delivered_at.is_(None), OutboxItem.dead_at.is_(None), OutboxItem.kind.in_(kinds)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_outbox(session: AsyncSession, *, kind: str | None = None) -> list[OutboxItem]:
    stmt = select(OutboxItem).order_by(OutboxItem.id)
    if kind is not None:
        stmt = stmt.where(OutboxItem.kind == kind)
    return list((await session.execute(stmt)).scalars().all())


# --- tokens ---------------------------------------------------------------------------------------------


async def add_token(
    session: AsyncSession, *, name: str, role: str, token_hash: str, prefix: str, at: datetime
) -> bool:
    stmt = _insert(session, ApiToken).on_conflict_do_nothing().returning(ApiToken.id)
    res = await session.execute(
        stmt, [dict(name=name, role=role, token_hash=token_hash, prefix=prefix, created_at=at)]
    )
    return res.first() is not None


async def token_by_hash(session: AsyncSession, *, token_hash: str) -> ApiToken | None:
    stmt = select(ApiToken).where(ApiToken.token_hash == token_hash, ApiToken.revoked_at.is_(None))
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_tokens(session: AsyncSession) -> list[ApiToken]:
    return list((await session.execute(select(ApiToken).order_by(ApiToken.name))).scalars().all())


async def revoke_token(session: AsyncSession, *, name: str, at: datetime) -> bool:
    stmt = (
        update(ApiToken)
        .where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
        .values(revoked_at=at)
    )
    return (await session.execute(stmt)).rowcount == 1  # type: ignore[attr-defined]


async def delete_revoked_token(session: AsyncSession, *, name: str) -> None:
    """A revoked token's name may be reused: the old row is removed when a new token takes the name."""
    await session.execute(delete(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_not(None)))


# --- key/value ------------------------------------------------------------------------------------------


async def kv_get(session: AsyncSession, *, key: str) -> str | None:
    return (await session.execute(select(KeyValue.value).where(KeyValue.key == key))).scalar_one_or_none()


async def kv_set_if_absent(session: AsyncSession, *, key: str, value: str) -> str:
    """Store ``value`` unless a value exists; return whichever is stored (first writer wins)."""
    await session.execute(_insert(session, KeyValue).on_conflict_do_nothing(), [dict(key=key, value=value)])
    stored = await kv_get(session, key=key)
    assert stored is not None
    return stored


async def notify(session: AsyncSession, *, channel: str, payload: str) -> None:
    """PostgreSQL NOTIFY, delivered to listeners when the transaction commits."""
    if _is_pg(session):
        await session.run_sync(lambda s: writes.notify(s.connection(), channel=channel, payload=payload))


async def outbox_backlog(session: AsyncSession) -> int:
    stmt = select(func.count()).where(OutboxItem.delivered_at.is_(None), OutboxItem.dead_at.is_(None))
    return int((await session.execute(stmt)).scalar_one())


async def set_slack_message(
    session: AsyncSession, *, request_id: str, channel: str, ts: str, permalink: str | None
) -> bool:
    """Record the card's message once: a second post for the same request never overwrites the first."""
    stmt = (
        update(Request)
        .where(Request.id == request_id, Request.slack_ts.is_(None))
        .values(slack_channel=channel, slack_ts=ts, slack_permalink=permalink)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(stmt)).rowcount == 1  # type: ignore[attr-defined]


# --- scheduler: reminders, escalations, deadline extensions, digests -----------------------------------------
#
# Each claim is one conditional UPDATE … RETURNING over rows picked with FOR UPDATE SKIP LOCKED on PostgreSQL
# (SQLite write transactions are exclusive): a row is claimed by exactly one replica, and the claimed rows'
# follow-up writes happen in the same transaction.


def _locked(session: AsyncSession, due: Any) -> Any:
    """On PostgreSQL a claim's rows are locked and rows other replicas hold are skipped."""
    return due.with_for_update(skip_locked=True) if _is_pg(session) else due


def _claimed(session: AsyncSession, column: Any, due: Any, *guards: Any) -> list[Any]:
    """The WHERE clause of a claim: ``column`` is one of the ids ``due`` picks, and ``guards`` still hold.

    PostgreSQL gets ``= ANY(ARRAY(subquery))`` and no guards: the subquery runs once, locking its rows
    (``FOR UPDATE SKIP LOCKED`` re-checks its conditions on the newest row version), and the rows are then
    found by primary key. With the guards, or with ``IN (subquery)``, stale statistics after a burst of
    inserts made the planner scan and filter the whole table: one to three seconds per batch of 1,000 among
    10,000 rows. SQLite's write transactions are exclusive, so there the guards are the compare-and-set."""
    if _is_pg(session):
        return [column == any_(func.array(due.scalar_subquery()))]
    return [column.in_(due.scalar_subquery()), *guards]


async def ladder_work_due(session: AsyncSession, *, now: datetime, extend_until: datetime) -> set[str]:
    """Which sweeps have work: a cheap read so idle sweeps never take the write lock."""
    pending = Request.status == "pending"
    checks = {
        "remind": select(Request.id).where(pending, Request.remind_at <= now, Request.expires_at > now),
        "escalate": select(Request.id).where(pending, Request.escalate_at <= now, Request.escalated_at.is_(None),
                                             Request.expires_at > now),
        "extend": select(Request.id).where(pending, Request.on_expiry == "escalate", Request.extended_at.is_(None),
                                           Request.expires_at <= extend_until),
    }
    stmt = select(*(q.limit(1).exists().label(name) for name, q in checks.items()))
    row = (await session.execute(stmt)).one()
    return {name for name, due in zip(checks, row, strict=True) if due}


async def _load(session: AsyncSession, ids: Sequence[str]) -> list[Request]:
    if not ids:
        return []
    rows = await session.execute(
        select(Request).where(Request.id.in_(ids)).order_by(Request.id).execution_options(populate_existing=True)
    )
    return list(rows.scalars().all())


async def expire_overdue_rows(
    session: AsyncSession, *, now: datetime, limit: int, reason: str
) -> list[Any]:
    """Finalise up to ``limit`` overdue pending requests as expired in one UPDATE … RETURNING, answering the
    updated rows (every column) without loading ORM objects: the sweep's bulk path."""
    due = (
        select(Request.id)
        .where(Request.status == "pending", Request.expires_at <= now)
        .order_by(Request.expires_at)
        .limit(limit)
    )
    due = _locked(session, due)
    table = Request.metadata.tables["requests"]
    stmt = (
        update(table)
        .where(*_claimed(session, table.c.id, due, table.c.status == "pending"))
        .values(status="expired", decision_kind="expire", decided_via="scheduler", decided_by_id="scheduler",
                decided_by_name="signoff", decided_at=table.c.expires_at, feedback=reason)  # as reads showed it
        .returning(*table.c)
    )
    return list((await session.execute(stmt)).all())


async def labels_and_approvals(
    session: AsyncSession, *, ids: Sequence[str]
) -> tuple[dict[str, list[str]], dict[str, list[Any]]]:
    """The labels and approvals of many requests (plain rows), for the bulk paths."""
    labels: dict[str, list[str]] = {}
    approvals: dict[str, list[Any]] = {}
    if not ids:
        return labels, approvals
    for rid, label in (await session.execute(
        select(Label.request_id, Label.label).where(Label.request_id.in_(ids)).order_by(Label.label)
    )).all():
        labels.setdefault(rid, []).append(label)
    for row in (await session.execute(
        select(Approval.request_id, Approval.reviewer_id, Approval.reviewer_name, Approval.at, Approval.version,
               Approval.via).where(Approval.request_id.in_(ids)).order_by(Approval.id)
    )).all():
        approvals.setdefault(row.request_id, []).append(row)
    return labels, approvals


async def claim_reminders(
    session: AsyncSession, *, now: datetime, limit: int
) -> list[tuple[Request, datetime]]:
    """Claim up to ``limit`` due reminders: counts each as sent and clears ``remind_at`` (the caller sets the
    next one). Returns the requests with the time each reminder was due."""
    due = (
        select(Request.id, Request.remind_at)
        .where(Request.status == "pending", Request.remind_at <= now, Request.expires_at > now)
        .order_by(Request.remind_at)
        .limit(limit)
    )
    due = _locked(session, due)
    was_due = {rid: at for rid, at in (await session.execute(due)).all() if at is not None}
    if not was_due:
        return []
    guards = [] if _is_pg(session) else [Request.status == "pending", Request.remind_at <= now]  # see _claimed
    stmt = (
        update(Request)
        .where(Request.id.in_(list(was_due)), *guards)
        .values(reminders_sent=Request.reminders_sent + 1, remind_at=None)
        .returning(Request.id)
        .execution_options(synchronize_session=False)
    )
    claimed = [r[0] for r in (await session.execute(stmt)).all()]
    return [(req, was_due[req.id]) for req in await _load(session, claimed)]


async def set_next_reminders(session: AsyncSession, *, due: Sequence[tuple[str, datetime]]) -> None:
    if due:
        await session.execute(update(Request), [{"id": rid, "remind_at": at} for rid, at in due])


async def claim_escalations(session: AsyncSession, *, now: datetime, limit: int) -> list[Request]:
    """Mark up to ``limit`` requests due for escalation as escalated now; return them."""
    return await _claim_marking(
        session, Request.escalated_at, now=now, limit=limit, order_by=Request.escalate_at,
        where=[Request.escalate_at <= now, Request.expires_at > now],
    )


async def claim_extensions(
    session: AsyncSession, *, now: datetime, until: datetime, limit: int
) -> list[Request]:
    """Claim up to ``limit`` ``on_expiry: escalate`` requests whose deadline is at or before ``until`` and was
    never extended (marks them extended; the caller moves the deadline)."""
    return await _claim_marking(
        session, Request.extended_at, now=now, limit=limit, order_by=Request.expires_at,
        where=[Request.on_expiry == "escalate", Request.expires_at <= until],
    )


async def _claim_marking(
    session: AsyncSession, mark: Any, *, now: datetime, limit: int, order_by: Any, where: list[Any]
) -> list[Request]:
    """Claim pending requests whose ``mark`` column is unset and that meet ``where``: set ``mark`` to now in
    one conditional UPDATE (the compare-and-set that keeps replicas from doing the same work twice)."""
    due = _locked(session, select(Request.id).where(Request.status == "pending", mark.is_(None), *where)
                  .order_by(order_by).limit(limit))
    stmt = (
        update(Request)
        .where(*_claimed(session, Request.id, due, Request.status == "pending", mark.is_(None)))
        .values({mark.key: now})
        .returning(Request.id)
        .execution_options(synchronize_session=False)
    )
    return await _load(session, [r[0] for r in (await session.execute(stmt)).all()])


async def set_request_times(session: AsyncSession, *, rows: Sequence[dict[str, Any]]) -> None:
    """Bulk update by primary key: each dict has ``id`` and the time columns to set."""
    if rows:
        await session.execute(update(Request), list(rows))


async def get_requests(session: AsyncSession, *, ids: Sequence[str]) -> list[Request]:
    return await _load(session, ids)


async def pending_with_label(
    session: AsyncSession, *, label: str, now: datetime, limit: int
) -> tuple[list[Request], int]:
    """The oldest ``limit`` pending (not overdue) requests carrying ``label``, and how many there are."""
    cond = (
        Request.status == "pending",
        Request.expires_at > now,
        Request.id.in_(select(Label.request_id).where(Label.label == label)),
    )
    total = int((await session.execute(select(func.count()).select_from(Request).where(*cond))).scalar_one())
    if total == 0 or limit <= 0:
        return [], total
    rows = await session.execute(select(Request).where(*cond).order_by(Request.created_at, Request.id).limit(limit))
    return list(rows.scalars().all()), total


async def count_pending_with_labels(session: AsyncSession, *, labels: Sequence[str], now: datetime) -> int:
    """How many pending (not overdue) requests carry any of ``labels``, each counted once."""
    stmt = select(func.count()).select_from(Request).where(
        Request.status == "pending",
        Request.expires_at > now,
        Request.id.in_(select(Label.request_id).where(Label.label.in_(list(labels)))),
    )
    return int((await session.execute(stmt)).scalar_one())


async def claim_digest_period(session: AsyncSession, *, name: str, period: str, at: datetime) -> bool:
    """Record that digest ``name`` runs for ``period``; False when that period is already taken (a concurrent
    claim on PostgreSQL waits on the unique index until the first commits, then loses)."""
    stmt = _insert(session, DigestRun).on_conflict_do_nothing().returning(DigestRun.id)
    res = await session.execute(stmt, [dict(name=name, period=period, at=at, request_count=0, posted=False)])
    return res.first() is not None


async def finish_digest_run(
    session: AsyncSession, *, name: str, period: str, request_count: int, posted: bool
) -> None:
    await session.execute(
        update(DigestRun).where(DigestRun.name == name, DigestRun.period == period)
        .values(request_count=request_count, posted=posted)
    )


async def digest_runs(session: AsyncSession, *, name: str | None = None) -> list[DigestRun]:
    stmt = select(DigestRun).order_by(DigestRun.id)
    if name is not None:
        stmt = stmt.where(DigestRun.name == name)
    return list((await session.execute(stmt)).scalars().all())


# --- policies: grants and budgets ------------------------------------------------------------------------


async def add_grant(session: AsyncSession, *, row: dict[str, Any]) -> None:
    await session.execute(_insert(session, GrantRow), [row])


async def active_grants(session: AsyncSession, *, now: datetime) -> list[GrantRow]:
    stmt = (
        select(GrantRow)
        .where(GrantRow.revoked_at.is_(None), GrantRow.expires_at > now)
        .order_by(GrantRow.created_at)
    )
    return list((await session.execute(stmt)).scalars().all())


async def revoke_grant(session: AsyncSession, *, grant_id: str, at: datetime, by: str) -> bool:
    stmt = (
        update(GrantRow)
        .where(GrantRow.id == grant_id, GrantRow.revoked_at.is_(None), GrantRow.expires_at > at)
        .values(revoked_at=at, revoked_by=by)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(stmt)).rowcount == 1  # type: ignore[attr-defined]


async def take_budget(
    session: AsyncSession, *, rule: str, agent: str, window_start: datetime, maximum: int
) -> bool:
    """Count one use against a budget window, atomically; False when the window is already used up."""
    return await session.run_sync(lambda s: writes.take_budget(s.connection(), rule=rule, agent=agent,
                                                               window_start=window_start, maximum=maximum))
