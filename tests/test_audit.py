"""The audit trail's hash chain: intact, edited and deleted events; export formats."""

from __future__ import annotations

import csv
import io
import json

from sqlalchemy import text

from bot.app import build_core
from bot.audit import export_lines, verify_chain
from bot.domain import Actor
from bot.schemas import SubmitBody
from bot.service import ApprovalService
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
