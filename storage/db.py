"""Engine and transactions. SQLite gets WAL, a busy timeout, foreign keys and ``BEGIN IMMEDIATE`` writes.

``Database.write()`` opens a write transaction: on SQLite it takes the write lock up front (``BEGIN
IMMEDIATE``) so a transaction never fails half-way on an upgrade from reader to writer, and an in-process
lock keeps this process's writers queued in asyncio instead of spinning in SQLite's busy handler.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy.exc
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine

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


class DatabaseBusy(Exception):
    """Every pooled connection stayed busy for the pool timeout; the caller should answer "retry later"."""


class Database:
    """Owns the engine. Construct it in the composition root; close it with ``await db.close()``."""

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10) -> None:
        self.url = normalise_url(url)
        self.dialect = make_url(self.url).get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo, "pool_timeout": 10}
        if self.dialect == "postgresql":
            # No pre-ping round trip per checkout (it cost a tenth of intake); connections are recycled instead,
            # and a connection found dead is invalidated by SQLAlchemy and replaced on the next checkout.
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)
        else:
            kwargs.update(pool_size=pool_size, max_overflow=2 * pool_size)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        if self.is_sqlite:
            _install_sqlite_hooks(self.engine)

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

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._session(immediate=False) as s:
            yield s

    @asynccontextmanager
    async def _session(self, *, immediate: bool) -> AsyncIterator[AsyncSession]:
        self._active += 1
        self._idle.clear()
        try:
            async with self._connected(immediate=immediate) as session:
                yield session
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    @asynccontextmanager
    async def _connected(self, *, immediate: bool) -> AsyncIterator[AsyncSession]:
        try:
            conn = await self.engine.connect().start()
        except sqlalchemy.exc.TimeoutError as e:
            raise DatabaseBusy("no database connection became free in time") from e
        try:
            if immediate:
                conn = await conn.execution_options(signoff_immediate=True)
            async with AsyncSession(bind=conn, expire_on_commit=False, autoflush=False) as session, session.begin():
                yield session
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


def _install_sqlite_hooks(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's implicit transactions would defer the write lock).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        for pragma in SQLITE_PRAGMAS:
            cur.execute(pragma)
        cur.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("signoff_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
