"""SQL for batches: requests reviewed together on one card, and the messages that card is made of.

Like ``storage.repository``, functions take the caller's session and keyword-only arguments and never commit;
each change that others may race for is one conditional UPDATE (a request joins a batch, or gets its card's
``ts``, only while it has none).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Batch, BatchMessage, Request


def _insert(session: AsyncSession, table: Any) -> Any:
    if session.bind.dialect.name == "postgresql":  # type: ignore[union-attr]
        return postgresql.insert(table)
    return sqlite.insert(table)


async def insert_batch(session: AsyncSession, *, row: dict[str, Any]) -> bool:
    """Insert a batch; False when its (agent, idempotency_key) is taken already."""
    stmt = _insert(session, Batch).on_conflict_do_nothing().returning(Batch.id)
    return (await session.execute(stmt, [row])).first() is not None


async def get_batch(session: AsyncSession, *, batch_id: str) -> Batch | None:
    stmt = select(Batch).where(Batch.id == batch_id).execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def batch_by_key(session: AsyncSession, *, agent: str, key: str) -> Batch | None:
    stmt = select(Batch).where(Batch.agent == agent, Batch.idempotency_key == key)
    return (await session.execute(stmt)).scalar_one_or_none()


async def batch_items(session: AsyncSession, *, batch: Batch) -> list[Request]:
    """The batch's requests in the order they were submitted."""
    stmt = select(Request).where(Request.batch_id == batch.id).execution_options(populate_existing=True)
    rows = {r.id: r for r in (await session.execute(stmt)).scalars().all()}
    return [rows[rid] for rid in batch.request_ids if rid in rows]


async def set_items(session: AsyncSession, *, batch_id: str, request_ids: Sequence[str]) -> None:
    await session.execute(update(Batch).where(Batch.id == batch_id)
                          .values(item_count=len(request_ids), request_ids=list(request_ids)))


async def waiting_for_card(session: AsyncSession, *, channel: str, now: datetime, limit: int) -> list[str]:
    """Pending requests routed to ``channel`` that have no card yet and are in no batch, oldest first."""
    stmt = (
        select(Request.id)
        .where(Request.channel == channel, Request.status == "pending", Request.expires_at > now,
               Request.slack_ts.is_(None), Request.batch_id.is_(None))
        .order_by(Request.id)
        .limit(limit)
    )
    return [r[0] for r in (await session.execute(stmt)).all()]


async def claim_into_batch(session: AsyncSession, *, ids: Sequence[str], batch_id: str) -> list[str]:
    """Move requests into a batch, only those still without a card and a batch; returns the ones moved."""
    if not ids:
        return []
    stmt = (
        update(Request)
        .where(Request.id.in_(list(ids)), Request.batch_id.is_(None), Request.slack_ts.is_(None),
               Request.status == "pending")
        .values(batch_id=batch_id)
        .returning(Request.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(r[0] for r in (await session.execute(stmt)).all())


async def batch_messages(session: AsyncSession, *, batch_id: str) -> dict[int, BatchMessage]:
    stmt = select(BatchMessage).where(BatchMessage.batch_id == batch_id).order_by(BatchMessage.part)
    return {m.part: m for m in (await session.execute(stmt)).scalars().all()}


async def add_batch_message(
    session: AsyncSession, *, batch_id: str, part: int, channel: str, ts: str, at: datetime
) -> bool:
    """Record one posted part of a batch card; False when that part was recorded already."""
    stmt = _insert(session, BatchMessage).on_conflict_do_nothing().returning(BatchMessage.part)
    res = await session.execute(stmt, [dict(batch_id=batch_id, part=part, channel=channel, ts=ts, at=at)])
    return res.first() is not None


async def set_batch_card(
    session: AsyncSession, *, batch_id: str, channel: str, ts: str, permalink: str | None
) -> bool:
    stmt = (
        update(Batch)
        .where(Batch.id == batch_id, Batch.slack_ts.is_(None))
        .values(slack_channel=channel, slack_ts=ts, slack_permalink=permalink)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(stmt)).rowcount == 1  # type: ignore[attr-defined]


async def set_cards(
    session: AsyncSession, *, ids: Sequence[str], channel: str, ts: str, permalink: str | None
) -> list[str]:
    """Record the batch card as the card of each request that has none yet; returns those updated."""
    if not ids:
        return []
    stmt = (
        update(Request)
        .where(Request.id.in_(list(ids)), Request.slack_ts.is_(None))
        .values(slack_channel=channel, slack_ts=ts, slack_permalink=permalink)
        .returning(Request.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(r[0] for r in (await session.execute(stmt)).all())
