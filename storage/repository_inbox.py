"""SQL for what reviewers read in Slack: pending pages in both directions, "may I decide it", what someone
decided lately, and the figures of ``/signoff stats``.

Pages are keyset pages on the request id (ids sort by creation time), so the first page of 10,000 pending
requests reads a dozen rows through an index, and Previous is the same query in the other direction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Text, cast, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Approval, Label, Request
from storage.repository import ListFilter

HUMAN_VIAS = ("slack", "cli", "api")
DECISIONS = ("approve", "edit", "reject")  # not a cancellation, which the agent makes through the API


def _pending_where(filt: ListFilter, reviewer_refs: Sequence[str] | None) -> list[Any]:
    conds: list[Any] = [Request.status == "pending"]
    if filt.label is not None:
        conds.append(Request.id.in_(select(Label.request_id).where(Label.label == filt.label)))
    for column, value in ((Request.tool, filt.tool), (Request.agent, filt.agent), (Request.risk, filt.risk),
                          (Request.channel, filt.channel)):
        if value is not None:
            conds.append(column == value)
    if reviewer_refs is not None:
        # ``reviewers`` is a JSON list of Slack ids ([A-Z0-9] only); an empty list means anyone may decide.
        text = cast(Request.reviewers, Text)
        conds.append(or_(text == "[]", *(text.like(f'%"{ref}"%') for ref in reviewer_refs)))
    return conds


async def pending_page(
    session: AsyncSession,
    *,
    filt: ListFilter,
    now: datetime,
    limit: int,
    before_id: str | None = None,
    after_id: str | None = None,
    reviewer_refs: Sequence[str] | None = None,
) -> list[Request]:
    """Up to ``limit`` pending requests, newest first: older than ``before_id`` or, for the page before,
    the ``limit`` newer than ``after_id`` closest to it. ``reviewer_refs`` keeps those that list one of them
    as a reviewer (or list nobody).

    The deadline is checked on the rows read rather than in SQL: that way the scan follows (status, id) in
    order and stops after a page, instead of collecting every pending request to sort it. Requests past
    their deadline are few (the expiry sweep finalises them within a second), so a page rarely reads twice.
    """
    conds = _pending_where(filt, reviewer_refs)
    ascending = after_id is not None
    rows: list[Request] = []
    while len(rows) < limit:
        stmt = select(Request).where(*conds)
        if ascending:
            stmt = stmt.where(Request.id > after_id).order_by(Request.id.asc())
        else:
            if before_id is not None:
                stmt = stmt.where(Request.id < before_id)
            stmt = stmt.order_by(Request.id.desc())
        read = list((await session.execute(stmt.limit(limit))).scalars().all())
        rows += [r for r in read if r.expires_at > now]
        if len(read) < limit:
            break
        if ascending:
            after_id = read[-1].id
        else:
            before_id = read[-1].id
    rows = rows[:limit]
    return rows[::-1] if ascending else rows


async def count_pending(
    session: AsyncSession, *, filt: ListFilter, now: datetime, reviewer_refs: Sequence[str] | None = None
) -> int:
    stmt = select(func.count()).select_from(Request).where(Request.expires_at > now,
                                                          *_pending_where(filt, reviewer_refs))
    return int((await session.execute(stmt)).scalar_one())


async def pending_reviewer_lists(session: AsyncSession, *, now: datetime) -> list[str]:
    """The distinct ``reviewers`` lists of pending requests, as JSON text (a handful in practice)."""
    text = cast(Request.reviewers, Text)
    stmt = select(text).where(Request.status == "pending", Request.expires_at > now).distinct()
    return [r[0] for r in (await session.execute(stmt)).all() if r[0]]


async def decided_by(session: AsyncSession, *, user_id: str, limit: int) -> list[tuple[Request, datetime]]:
    """Requests ``user_id`` decided or approved, newest first, with when they did."""
    finals = (
        await session.execute(
            select(Request.id, Request.decided_at)
            .where(Request.decided_by_id == user_id, Request.decided_at.is_not(None))
            .order_by(Request.decided_at.desc())
            .limit(limit)
        )
    ).all()
    approvals = (
        await session.execute(
            select(Approval.request_id, func.max(Approval.at))
            .where(Approval.reviewer_id == user_id)
            .group_by(Approval.request_id)
            .order_by(func.max(Approval.at).desc())
            .limit(limit)
        )
    ).all()
    when: dict[str, datetime] = {}
    for rid, at in [*finals, *approvals]:
        if at is not None and (rid not in when or at > when[rid]):
            when[rid] = at
    newest = sorted(when, key=lambda rid: when[rid], reverse=True)[:limit]
    if not newest:
        return []
    rows = (await session.execute(select(Request).where(Request.id.in_(newest)))).scalars().all()
    by_id = {r.id: r for r in rows}
    return [(by_id[rid], when[rid]) for rid in newest if rid in by_id]


# --- stats ---------------------------------------------------------------------------------------------------


async def status_counts(session: AsyncSession, *, since_id: str, now: datetime) -> dict[str, int]:
    """Requests created since ``since_id`` (an id floor for a time) by status; overdue pending count expired."""
    created = Request.id >= since_id
    rows = (await session.execute(
        select(Request.status, func.count()).where(created).group_by(Request.status))).all()
    counts = {status: int(n) for status, n in rows}
    overdue = int((await session.execute(
        select(func.count()).select_from(Request)
        .where(created, Request.status == "pending", Request.expires_at <= now))).scalar_one())
    if overdue:
        counts["pending"] = counts.get("pending", 0) - overdue
        counts["expired"] = counts.get("expired", 0) + overdue
    return {k: v for k, v in counts.items() if v}


async def decision_times(session: AsyncSession, *, since: datetime, limit: int) -> list[float]:
    """Seconds from submission to a person's decision, for decisions since ``since`` (newest ``limit``)."""
    stmt = (
        select(Request.created_at, Request.decided_at)
        .where(Request.decided_at >= since, Request.decided_via.in_(HUMAN_VIAS),
               Request.decision_kind.in_(DECISIONS))
        .order_by(Request.decided_at.desc())
        .limit(limit)
    )
    return [max(0.0, (d - c).total_seconds()) for c, d in (await session.execute(stmt)).all() if d is not None]


async def busiest_tools(session: AsyncSession, *, since_id: str, limit: int) -> list[tuple[str, int]]:
    n = func.count().label("n")
    stmt = (select(Request.tool, n).where(Request.id >= since_id).group_by(Request.tool)
            .order_by(n.desc(), Request.tool).limit(limit))
    return [(tool, int(count)) for tool, count in (await session.execute(stmt)).all()]


async def decisions_per_reviewer(
    session: AsyncSession, *, since: datetime, limit: int
) -> list[tuple[str, str, int]]:
    """(id, name, decisions) of the people who decided most since ``since``."""
    n = func.count().label("n")
    stmt = (
        select(Request.decided_by_id, func.max(Request.decided_by_name), n)
        .where(Request.decided_at >= since, Request.decided_via.in_(HUMAN_VIAS),
               Request.decision_kind.in_(DECISIONS), Request.decided_by_id.is_not(None))
        .group_by(Request.decided_by_id)
        .order_by(n.desc(), Request.decided_by_id)
        .limit(limit)
    )
    return [(str(rid), str(name or rid), int(count)) for rid, name, count in (await session.execute(stmt)).all()]


async def count_decided_by(session: AsyncSession, *, user_id: str, since: datetime) -> int:
    """How many requests ``user_id`` decided (or approved, towards a quorum) since ``since``."""
    finals = select(Request.id).where(Request.decided_by_id == user_id, Request.decided_at >= since,
                                      Request.decision_kind.in_(DECISIONS))
    approved = select(Approval.request_id).where(Approval.reviewer_id == user_id, Approval.at >= since)
    stmt = select(func.count()).select_from(finals.union(approved).subquery())
    return int((await session.execute(stmt)).scalar_one())


# --- escalation from a card ------------------------------------------------------------------------------------


async def mark_escalated(session: AsyncSession, *, request_id: str, now: datetime) -> bool:
    """Mark a pending request escalated now, only if nobody (a reviewer, or the scheduler's ladder) did yet."""
    stmt = (
        update(Request)
        .where(Request.id == request_id, Request.status == "pending", Request.escalated_at.is_(None))
        .values(escalated_at=now)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(stmt)).rowcount == 1  # type: ignore[attr-defined]
