"""Engine and transactions. SQLite gets WAL, a busy timeout, foreign keys and ``BEGIN IMMEDIATE`` writes.

``Database.write()`` opens a write transaction: on SQLite it takes the write lock up front (``BEGIN
IMMEDIATE``) so a transaction never fails half-way on an upgrade from reader to writer, and an in-process
lock keeps this process's writers queued in asyncio instead of spinning in SQLite's busy handler.

``Database.run_write(fn)`` runs a whole write transaction written as a synchronous function of a Core
``Connection``. On a SQLite file it runs in one writer thread on a plain sqlite3 connection: a single hand-off
per transaction, where aiosqlite costs several per statement (the difference is most of the intake path's
database time). On PostgreSQL it runs through ``AsyncConnection.run_sync`` on the async engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import orjson
import sqlalchemy.exc
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine

T = TypeVar("T")
log = logging.getLogger("signoff.db")

CHECKPOINT_EVERY_S = 0.5
# One reader thread beside the writer thread. More readers drained a flood of reads faster, but their
# contention for the GIL held back the writer: a decision's p99 went from 20 to 80 ms (bench/run.py wake).
SQLITE_READERS = 1

SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA busy_timeout=10000",
    "PRAGMA foreign_keys=ON",
    "PRAGMA synchronous=NORMAL",
)


def normalise_url(url: str) -> str:
    """Accept plain ``sqlite:///`` and ``postgresql://`` URLs as well as the explicit async-driver forms."""
    u = make_url(url)
    if u.drivername in ("sqlite", "sqlite+pysqlite"):
        u = u.set(drivername="sqlite+aiosqlite")
    elif u.drivername in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        u = u.set(drivername="postgresql+asyncpg")
    return u.render_as_string(hide_password=False)


def json_dumps(value: Any) -> str:
    """JSON columns are written with orjson (several times faster than the standard library, which costs a
    submission five encodes); an integer beyond 64 bits, which orjson refuses, takes the standard library."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, ensure_ascii=False)


class DatabaseBusy(Exception):
    """Every pooled connection stayed busy for the pool timeout; the caller should answer "retry later"."""


class Database:
    """Owns the engine. Construct it in the composition root; close it with ``await db.close()``."""

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10) -> None:
        self.url = normalise_url(url)
        self.dialect = make_url(self.url).get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo, "pool_timeout": 10, "json_serializer": json_dumps}
        if self.dialect == "postgresql":
            # No pre-ping round trip per checkout (it cost a tenth of intake); connections are recycled instead,
            # and a connection found dead is invalidated by SQLAlchemy and replaced on the next checkout.
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800, pool_use_lifo=True)
        else:
            kwargs.update(pool_size=pool_size, max_overflow=2 * pool_size)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._sync_engine: Engine | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._read_engine: Engine | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._checkpointer: ThreadPoolExecutor | None = None
        self._checkpointing = False
        self._checkpointed_at = 0.0
        if self.is_sqlite:
            _install_sqlite_hooks(self.engine.sync_engine)
            u = make_url(self.url)
            if u.database and u.database != ":memory:" and not u.database.startswith("file:"):
                # One connection, used only by the writer thread. The writer never checkpoints on commit: a thread
                # of its own does (_after_write), so copying the WAL into the database file and its fsync happen
                # beside the writer, not inside a submission.
                self._sync_engine = _sqlite_sync_engine(u, 1, "PRAGMA wal_autocheckpoint=0")
                self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="signoff-sqlite-writer")
                # Readers in WAL mode see the last commit and never wait for the writer (+1: the checkpoint's).
                self._read_engine = _sqlite_sync_engine(u, SQLITE_READERS + 1)
                self._readers = ThreadPoolExecutor(max_workers=SQLITE_READERS,
                                                   thread_name_prefix="signoff-sqlite-reader")
                self._checkpointer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="signoff-sqlite-checkpoint")

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A write transaction; commits on success, rolls back on error."""
        if self._write_lock is not None:
            async with self._write_lock, self._session(immediate=True) as s:
                yield s
        else:
            async with self._session(immediate=False) as s:
                yield s

    async def run_write(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(connection)`` as one write transaction; commits if it returns, rolls back if it raises."""
        with self._in_use():
            if self._writer is None:
                async with self._connected_core(immediate=True) as conn:
                    return await conn.run_sync(fn)
            assert self._write_lock is not None
            async with self._write_lock:
                fut = asyncio.get_running_loop().run_in_executor(self._writer, self._sync_transaction, fn)
                try:
                    return await asyncio.shield(fut)
                except asyncio.CancelledError:
                    # Keep the lock until the thread's transaction has ended, then let the cancellation through.
                    with contextlib.suppress(Exception):
                        await asyncio.wait([fut])
                    raise

    async def run_statement(self, fn: Callable[[Connection], T]) -> T:
        """``run_write`` for a ``fn`` that sends a single statement: on PostgreSQL the statement is its own
        transaction (autocommit, so no BEGIN and COMMIT round trips; a statement is atomic either way)."""
        if not self.is_postgres:
            return await self.run_write(fn)
        with self._in_use():
            async with self._checked_out(immediate=False) as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                return await conn.run_sync(fn)

    def _sync_transaction(self, fn: Callable[[Connection], T]) -> T:
        assert self._sync_engine is not None
        with self._sync_engine.connect() as conn:
            conn.execution_options(signoff_immediate=True)
            with conn.begin():
                result = fn(conn)
        self._after_write()
        return result

    def _after_write(self) -> None:
        """At most every CHECKPOINT_EVERY_S, a passive checkpoint on its own thread (writers go on meanwhile)."""
        now = time.monotonic()
        if self._checkpointer is None or self._checkpointing or now - self._checkpointed_at < CHECKPOINT_EVERY_S:
            return
        self._checkpointing, self._checkpointed_at = True, now
        self._checkpointer.submit(self._checkpoint)

    def _checkpoint(self) -> None:
        assert self._read_engine is not None
        try:
            with self._read_engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception:  # a checkpoint that fails is retried by the next one; writes never wait for it
            log.warning("SQLite checkpoint failed", exc_info=True)
        finally:
            self._checkpointing = False

    async def run_read(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(connection)`` in a read transaction (one snapshot); on a SQLite file in a reader thread."""
        with self._in_use():
            if self._readers is None:
                async with self._connected_core(immediate=False) as conn:
                    return await conn.run_sync(fn)
            return await asyncio.get_running_loop().run_in_executor(self._readers, self._sync_read, fn)

    def _sync_read(self, fn: Callable[[Connection], T]) -> T:
        assert self._read_engine is not None
        with self._read_engine.connect() as conn, conn.begin():
            return fn(conn)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._session(immediate=False) as s:
            yield s

    @contextlib.contextmanager
    def _in_use(self) -> Iterator[None]:
        """Counts work in flight, which ``close`` waits for."""
        self._active += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    @asynccontextmanager
    async def _session(self, *, immediate: bool) -> AsyncIterator[AsyncSession]:
        with self._in_use():
            async with self._connected(immediate=immediate) as session:
                yield session

    @asynccontextmanager
    async def _connected(self, *, immediate: bool) -> AsyncIterator[AsyncSession]:
        async with (self._checked_out(immediate=immediate) as conn,
                    AsyncSession(bind=conn, expire_on_commit=False, autoflush=False) as session, session.begin()):
            yield session

    @asynccontextmanager
    async def _connected_core(self, *, immediate: bool) -> AsyncIterator[AsyncConnection]:
        """A Core connection in a transaction (the write lock held on SQLite when ``immediate``)."""
        lock = self._write_lock if immediate and self._write_lock is not None else contextlib.nullcontext()
        async with lock, self._checked_out(immediate=immediate) as conn, conn.begin():
            yield conn

    @asynccontextmanager
    async def _checked_out(self, *, immediate: bool) -> AsyncIterator[AsyncConnection]:
        """A pooled connection (``DatabaseBusy`` when none frees up); ``immediate`` makes SQLite's BEGIN take the
        write lock up front."""
        try:
            conn = await self.engine.connect().start()
        except sqlalchemy.exc.TimeoutError as e:
            raise DatabaseBusy("no database connection became free in time") from e
        try:
            if immediate and self.is_sqlite:
                conn = await conn.execution_options(signoff_immediate=True)
            yield conn
        finally:
            await conn.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def close(self, *, grace_s: float = 5.0) -> None:
        """Let transactions in flight (a sweep, a delivery) finish, then close every connection."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout=grace_s)
        await self.engine.dispose()
        for pool, engine in ((self._writer, self._sync_engine), (self._checkpointer, None),
                             (self._readers, self._read_engine)):
            if pool is not None:
                # Dispose on the pool's thread after anything still queued there (a checkpoint: wait for it).
                await asyncio.get_running_loop().run_in_executor(pool, engine.dispose if engine else lambda: None)
                pool.shutdown(wait=False)


def _sqlite_sync_engine(url: URL, connections: int, *extra_pragmas: str) -> Engine:
    """A plain sqlite3 engine on the same file for the worker threads (a connection may be closed from another
    thread at dispose, hence ``check_same_thread=False``)."""
    engine = create_engine(url.set(drivername="sqlite+pysqlite"), pool_size=connections, max_overflow=0,
                           json_serializer=json_dumps, connect_args={"check_same_thread": False})
    _install_sqlite_hooks(engine, *extra_pragmas)
    return engine


def _install_sqlite_hooks(sync_engine: Engine, *extra_pragmas: str) -> None:

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's implicit transactions would defer the write lock).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        for pragma in (*SQLITE_PRAGMAS, *extra_pragmas):
            cur.execute(pragma)
        cur.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("signoff_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
