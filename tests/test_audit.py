"""The audit trail's hash chain: intact, edited and deleted events; export formats."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from bot.app import build_core
from bot.audit import export_lines, verify_chain
from bot.domain import Actor
from bot.schemas import SubmitBody
from bot.service import ApprovalService
from storage.chain import body_around_seq, event_hash
from storage.db import Database
from storage.migrate import upgrade
from tests.conftest import make_settings


async def _trail(db_url: str) -> tuple[Database, ApprovalService]:
    db, service, _tokens, _m = build_core(make_settings(db_url))
    await upgrade(db)
    for i in range(3):
        out = await service.submit(agent="bot", body=SubmitBody.model_validate(
            {"action": {"tool": "send_email", "args": {"n": i}}}))
        await service.decide(request_id=out.request["id"], kind="reject", actor=Actor("U1", "Dana", "api"),
                             feedback=f"no {i}")
    return db, service


async def test_intact_chain_verifies(db_url: str) -> None:
    db, _ = await _trail(db_url)
    try:
        report = await verify_chain(db)
        assert report.ok and report.checked == 6
    finally:
        await db.close()


async def test_an_edited_event_is_reported(db_url: str) -> None:
    db, _ = await _trail(db_url)
    try:
        async with db.write() as s:
            await s.execute(text("UPDATE audit_events SET actor_name = 'Mallory' WHERE seq = 4"))
        report = await verify_chain(db)
        assert not report.ok and report.seq == 4 and "modified" in (report.problem or "")
        assert report.checked == 3
    finally:
        await db.close()


async def test_a_deleted_event_is_reported(db_url: str) -> None:
    db, _ = await _trail(db_url)
    try:
        async with db.write() as s:
            await s.execute(text("DELETE FROM audit_events WHERE seq = 2"))
        report = await verify_chain(db)
        assert not report.ok and report.seq == 2 and "missing" in (report.problem or "")
    finally:
        await db.close()


async def test_export_jsonl_and_csv(sqlite_url: str) -> None:
    db, _ = await _trail(sqlite_url)
    try:
        lines = [json.loads(line) async for line in export_lines(db, fmt="jsonl")]
        assert [e["seq"] for e in lines] == [1, 2, 3, 4, 5, 6]
        assert [e["kind"] for e in lines[:2]] == ["created", "rejected"]
        assert lines[1]["data"]["feedback"] == "no 0" and lines[1]["prev_hash"] == lines[0]["hash"]
        text_csv = "".join([line async for line in export_lines(db, fmt="csv")])
        rows = list(csv.DictReader(io.StringIO(text_csv)))
        assert len(rows) == 6 and rows[5]["actor_name"] == "Dana" and json.loads(rows[5]["data"])["feedback"] == "no 2"
    finally:
        await db.close()


_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
_json = st.recursive(st.none() | st.booleans() | st.integers() | _text,
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
                     max_leaves=8)


@given(request_id=st.none() | _text, kind=_text, actor_id=st.none() | _text, actor_name=st.none() | _text,
       via=st.none() | _text, data=st.dictionaries(_text, _json, max_size=4), seq=st.integers(1, 2**62),
       offset_h=st.integers(-12, 12))
def test_body_around_seq_hashes_like_event_hash(request_id: str | None, kind: str, actor_id: str | None,
                                                 actor_name: str | None, via: str | None, data: dict[str, Any],
                                                 seq: int, offset_h: int) -> None:
    at = datetime(2026, 11, 22, 7, 30, 1, 123456, tzinfo=timezone(timedelta(hours=offset_h)))
    fields: dict[str, Any] = dict(request_id=request_id, kind=kind, actor_id=actor_id, actor_name=actor_name,
                                  via=via, at=at, data=data)
    head, tail = body_around_seq(**fields)
    prev = "ab" * 32
    assert hashlib.sha256((prev + head + str(seq) + tail).encode()).hexdigest() == event_hash(prev, seq=seq, **fields)


async def test_replicas_appending_at_once_keep_one_chain(pg_url: str) -> None:
    """Two replicas' writers (PostgreSQL: ``signoff_append_audit`` under the advisory lock) interleave freely;
    the chain still has every event once, numbered without gaps, and verifies — including odd text and data."""
    replicas = [build_core(make_settings(pg_url)) for _ in range(2)]
    await upgrade(replicas[0][0])
    try:
        async def submit(service: ApprovalService, i: int) -> None:
            out = await service.submit(agent="bot", body=SubmitBody.model_validate({
                "action": {"tool": "send_email", "args": {"n": i, "to": "zoë@example.com"}},
                "labels": ["needs-human-review", f"l{i % 3}"]}))
            if i % 4 == 0:
                await service.decide(request_id=out.request["id"], kind="reject", actor=Actor("U1", "Zoë", "api"),
                                     feedback=f"naïve ☃ \"quoted\" back\\slash\nline {i}")

        await asyncio.gather(*(submit(replicas[i % 2][1], i) for i in range(60)))
        report = await verify_chain(replicas[0][0])
        assert report.ok and report.checked == 75, report
        async with replicas[1][0].read() as s:
            labels = (await s.execute(text("SELECT count(*) FROM request_labels"))).scalar_one()
        assert labels == 120
    finally:
        for db, *_ in replicas:
            await db.close()


async def test_migration_0006_downgrades_and_upgrades(db_url: str) -> None:
    """Down to 0005 drops PostgreSQL's append function (SQLite has none) and up again restores it; a write after
    that still verifies."""
    from alembic import command

    from storage.migrate import alembic_config

    db, service, _tokens, _m = build_core(make_settings(db_url))
    await upgrade(db)
    cfg = alembic_config()

    def migrate(target: str, down: bool) -> Any:
        def run(sync_conn: Any) -> None:
            cfg.attributes["connection"] = sync_conn
            (command.downgrade if down else command.upgrade)(cfg, target)
        return run

    async def functions() -> int:
        if not db.is_postgres:
            return 0
        async with db.read() as s:
            return int((await s.execute(text(
                "SELECT count(*) FROM pg_proc WHERE proname = 'signoff_append_audit'"))).scalar_one())

    try:
        assert await functions() == (1 if db.is_postgres else 0)
        async with db.engine.begin() as conn:
            await conn.run_sync(migrate("0005_policies", down=True))
        assert await functions() == 0
        async with db.engine.begin() as conn:
            await conn.run_sync(migrate("heads", down=False))
        assert await functions() == (1 if db.is_postgres else 0)
        await service.submit(agent="bot", body=SubmitBody.model_validate({"action": {"tool": "t", "args": {}}}))
        assert (await verify_chain(db)).ok
    finally:
        await db.close()
