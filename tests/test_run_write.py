"""``Database.run_write``: a synchronous transaction function (the SQLite writer thread, or run_sync on
PostgreSQL), and the group committer that feeds submissions into it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from bot.intake import GroupCommitter
from storage.db import CHECKPOINT_EVERY_S, Database
from storage.migrate import upgrade


@pytest.fixture
async def db(db_url: str) -> Database:
    database = Database(db_url)
    await upgrade(database)
    yield database  # type: ignore[misc]
    await database.close()


async def _kv(db: Database, key: str) -> str | None:
    async with db.read() as s:
        return (await s.execute(text("SELECT value FROM kv WHERE key = :k"), {"k": key})).scalar()


async def test_a_returning_function_commits_and_a_raising_one_rolls_back(db: Database) -> None:
    def put(conn: Connection) -> str:
        conn.execute(text("INSERT INTO kv (key, value) VALUES ('a', '1')"))
        return "done"

    assert await db.run_write(put) == "done"
    assert await _kv(db, "a") == "1"

    def put_then_fail(conn: Connection) -> None:
        conn.execute(text("INSERT INTO kv (key, value) VALUES ('b', '2')"))
        raise LookupError("changed my mind")

    with pytest.raises(LookupError, match="changed my mind"):
        await db.run_write(put_then_fail)
    assert await _kv(db, "b") is None


async def test_sqlite_runs_the_function_on_one_writer_thread_postgres_on_the_loop(db: Database) -> None:
    names = {await db.run_write(lambda _c: threading.current_thread().name) for _ in range(5)}
    assert len(names) == 1
    if db.is_sqlite:
        assert names.pop().startswith("signoff-sqlite-writer")
    else:  # through AsyncConnection.run_sync, in a greenlet on the event loop's own thread
        assert names.pop() == threading.current_thread().name


async def test_a_cancelled_caller_keeps_the_lock_until_its_transaction_ended(db: Database) -> None:
    started = threading.Event()

    def slow(conn: Connection) -> None:
        started.set()
        time.sleep(0.3)
        conn.execute(text("INSERT INTO kv (key, value) VALUES ('slow', 'x')"))

    task = asyncio.create_task(db.run_write(slow))
    assert await asyncio.to_thread(started.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Another writer right after the cancellation is neither refused ("database is locked") nor interleaved.
    async with db.write() as s:
        await s.execute(text("INSERT INTO kv (key, value) VALUES ('after', 'y')"))
    assert await _kv(db, "after") == "y"
    if db.is_sqlite:  # the thread's transaction was not abandoned half-way: it committed
        assert await _kv(db, "slow") == "x"


async def test_the_group_committer_batches_what_queues_up_and_isolates_a_bad_item() -> None:
    batches: list[list[int]] = []

    async def commit(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        await asyncio.sleep(0.01)
        if 13 in items:
            raise ValueError("13 is refused")
        return [i * 2 for i in items]

    gc: GroupCommitter[int, int] = GroupCommitter(commit)
    results = await asyncio.gather(*(gc.submit(i) for i in range(20)), return_exceptions=True)
    assert batches[0] == [0]  # the first item starts a commit at once; the rest queue behind it
    assert batches[1] == list(range(1, 20))  # … and go together
    assert [r for i, r in enumerate(results) if i != 13] == [i * 2 for i in range(20) if i != 13]
    assert isinstance(results[13], ValueError)  # only the bad item fails; its neighbours were retried alone


async def test_sqlite_checkpoints_beside_the_writer(tmp_path: Path) -> None:
    """The writer connection never checkpoints on commit; a reader thread copies the WAL into the database file
    at most every half second, so the file grows with what was written while the writer goes on."""
    path = tmp_path / "checkpoint.db"
    db = Database(f"sqlite:///{path}")
    try:
        await upgrade(db)
        before = path.stat().st_size

        def put(start: int) -> Callable[[Connection], None]:
            def run(conn: Connection) -> None:
                conn.execute(text("INSERT INTO kv (key, value) VALUES (:k, :v)"),
                             [{"k": f"k{start + i}", "v": "x" * 500} for i in range(500)])
            return run

        for n in range(4):
            await db.run_write(put(n * 500))
            await asyncio.sleep(0.2)
        await asyncio.sleep(CHECKPOINT_EVERY_S)
        await db.run_write(put(10_000))  # the first write after the interval starts a checkpoint

        def grown() -> int:
            deadline = time.monotonic() + 10
            while path.stat().st_size < before + 1_000_000 and time.monotonic() < deadline:
                time.sleep(0.05)
            return path.stat().st_size

        assert await asyncio.to_thread(grown) >= before + 1_000_000  # 2,500 rows of 500 bytes left the WAL
    finally:
        await db.close()


def test_sqlite_times_are_stored_as_sqlalchemy_stores_them() -> None:
    """The bulk inserts' one-call conversion of aware times on SQLite gives SQLAlchemy's own text, so rows
    written either way compare and sort alike."""
    from datetime import UTC, datetime, timedelta, timezone

    from sqlalchemy.dialects import sqlite as sqlite_dialect

    from storage.models import UTCDateTime
    from storage.writes import _sqlite_utc

    dialect = sqlite_dialect.dialect()
    column_type = UTCDateTime()
    to_db = column_type.dialect_impl(dialect).bind_processor(dialect)
    assert to_db is not None
    for value in (datetime(2026, 11, 22, 8, 31, 8, 123456, tzinfo=UTC), datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
                  datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=-7, minutes=-30))),
                  datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=14)))):
        assert _sqlite_utc(value) == to_db(value)
    with pytest.raises(ValueError, match="naive"):
        _sqlite_utc(datetime(2026, 11, 22, 8, 0))
