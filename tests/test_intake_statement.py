"""A batch of submissions commits as a unit: requests, labels, outbox rows and audit events of the requests
inserted, nothing for a retried idempotency key. On PostgreSQL this is one statement (``writes.pg_intake``);
the same checks run on SQLite, whose writer takes the statements one by one."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text

from bot.app import build_core
from bot.audit import verify_chain
from bot.schemas import SubmitBody
from bot.settings import Secret
from storage import writes
from storage.migrate import upgrade
from tests.conftest import make_settings


def _body(i: int, **extra: Any) -> SubmitBody:
    return SubmitBody.model_validate({"action": {"tool": "send_email", "args": {"n": i}},
                                      "labels": ["needs-human-review", f"team-{i % 2}"], **extra})


async def _counts(db: Any) -> dict[str, int]:
    out = {}
    async with db.read() as s:
        for table in ("requests", "request_labels", "outbox", "audit_events"):
            out[table] = (await s.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
    return out


async def test_a_batch_with_retries_writes_each_request_once(db_url: str) -> None:
    settings = make_settings(db_url, slack_bot_token=Secret("xoxb-test"), slack_signing_secret=Secret("s"),
                             default_channel="C0REVIEW")
    db, service, _tokens, _metrics = build_core(settings)
    await upgrade(db)
    try:
        first = await service.submit(agent="bot", body=_body(0, idempotency_key="k-0"))
        assert first.created
        # One batch: 20 new requests, a retry of k-0 (already committed), and k-5 twice within the batch.
        bodies = [_body(i, idempotency_key=f"k-{i}") for i in range(1, 21)]
        bodies += [_body(0, idempotency_key="k-0"), _body(5, idempotency_key="k-5")]
        results = await asyncio.gather(*(service.submit(agent="bot", body=b) for b in bodies))
        assert [r.created for r in results] == [True] * 20 + [False, False]
        assert results[20].request["id"] == first.request["id"]
        assert results[21].request["id"] == results[4].request["id"]
        counts = await _counts(db)
        # 21 requests, two labels each; one Slack card per request in the outbox; one "created" event each.
        assert counts == {"requests": 21, "request_labels": 42, "outbox": 21, "audit_events": 21}
        async with db.read() as s:
            owners = set((await s.execute(text("SELECT request_id FROM outbox"))).scalars())
            labelled = set((await s.execute(text("SELECT request_id FROM request_labels"))).scalars())
        ids = {first.request["id"], *(r.request["id"] for r in results)}
        assert owners == labelled == ids
        report = await verify_chain(db)
        assert report.ok and report.checked == 21
        got = await service.get(request_id=results[3].request["id"])
        assert got["labels"] == ["needs-human-review", "team-0"]
    finally:
        await db.close()


async def test_a_batch_of_duplicates_only_writes_nothing(db_url: str) -> None:
    db, service, _tokens, _metrics = build_core(make_settings(db_url))
    await upgrade(db)
    try:
        await service.submit(agent="bot", body=_body(1, idempotency_key="again"))
        before = await _counts(db)
        again = await asyncio.gather(*(service.submit(agent="bot", body=_body(1, idempotency_key="again"))
                                       for _ in range(5)))
        assert not any(r.created for r in again)
        assert await _counts(db) == before
        assert (await verify_chain(db)).ok
    finally:
        await db.close()


async def test_the_statement_is_atomic_without_a_transaction_around_it(pg_url: str) -> None:
    """PostgreSQL runs the intake statement in autocommit: when a later part of it fails (here a label longer
    than its column), the requests it inserted first are not kept either."""
    db, service, _tokens, _metrics = build_core(make_settings(pg_url))
    await upgrade(db)
    try:
        prepared = service.prepare(agent="bot", body=_body(1))
        rid = prepared.row["id"]
        with pytest.raises(Exception, match="too long"):  # the driver's error: the cursor is used directly
            await db.run_statement(lambda conn: writes.pg_intake(
                conn, rows=[prepared.row], labels=[(rid, "x" * 200)], outbox=[], events=prepared.audit))
        assert await _counts(db) == {"requests": 0, "request_labels": 0, "outbox": 0, "audit_events": 0}
        inserted = await db.run_statement(lambda conn: writes.pg_intake(
            conn, rows=[prepared.row], labels=[(rid, "ok")], outbox=[], events=prepared.audit))
        assert inserted == {rid}
        assert await _counts(db) == {"requests": 1, "request_labels": 1, "outbox": 0, "audit_events": 1}
    finally:
        await db.close()


async def test_insert_requests_takes_labels_of_the_rows_inserted_only(db_url: str) -> None:
    """The statement-by-statement path (a batch with a budget rule, batches of the batch API): labels go in
    for the requests inserted, and a second insert of the same idempotency key adds neither row nor labels."""
    db, service, _tokens, _metrics = build_core(make_settings(db_url))
    await upgrade(db)
    try:
        first = service.prepare(agent="bot", body=_body(1, idempotency_key="same"))
        again = service.prepare(agent="bot", body=_body(1, idempotency_key="same"))
        other = service.prepare(agent="bot", body=_body(2))

        def insert(*ps: Any) -> Any:
            return lambda conn: writes.insert_requests(
                conn, rows=[p.row for p in ps], labels=[(p.row["id"], lb) for p in ps for lb in p.labels])

        assert await db.run_write(insert(first, other)) == {first.row["id"], other.row["id"]}
        assert await db.run_write(insert(again)) == set()
        counts = await _counts(db)
        assert (counts["requests"], counts["request_labels"]) == (2, 4)
    finally:
        await db.close()
