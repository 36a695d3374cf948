"""Apply Alembic migrations to the configured database (used by ``signoff serve`` and ``signoff db upgrade``).

A database already at the newest revision is recognised without loading Alembic (about 11 MB that a
long-running server would otherwise keep for nothing): the newest revisions are read from the migration
files' ``revision`` / ``down_revision`` lines and compared with the database's ``alembic_version``.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect, text

from storage.db import Database

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS = Path(__file__).with_name("migrations")
_LOCK_KEY = 0x5167_0FF0  # advisory lock: replicas starting together migrate one at a time


def alembic_config() -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revisions() -> tuple[str, ...]:
    from alembic.script import ScriptDirectory

    return tuple(ScriptDirectory.from_config(alembic_config()).get_heads())


@functools.cache
def newest_revisions() -> frozenset[str]:
    """The heads of the migration graph, read from the files in ``versions/`` without importing Alembic:
    every ``revision`` that no file names as its ``down_revision``."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            # script.py.mako writes them as plain assignments: ``revision = "..."``, ``down_revision = ...``
            if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
                continue
            if node.targets[0].id == "revision":
                revisions.add(ast.literal_eval(node.value))
            elif node.targets[0].id == "down_revision":
                down = ast.literal_eval(node.value)
                parents.update((down,) if isinstance(down, str) else down or ())
    return frozenset(revisions - parents)


def _applied(sync_conn: Any) -> frozenset[str]:
    if not inspect(sync_conn).has_table("alembic_version"):
        return frozenset()
    return frozenset(r[0] for r in sync_conn.execute(text("SELECT version_num FROM alembic_version")))


async def upgrade(db: Database) -> str | None:
    """Bring the schema to the newest revision(s); returns the revision(s) now applied."""
    async with db.engine.connect() as conn:
        applied = await conn.run_sync(_applied)
    if applied and applied == newest_revisions():
        return ",".join(sorted(applied))
    return await _alembic_upgrade(db)


async def _alembic_upgrade(db: Database) -> str | None:
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    cfg = alembic_config()

    def _run(sync_conn: Any) -> str | None:
        if sync_conn.dialect.name == "postgresql":
            sync_conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, "heads")
        return ",".join(sorted(MigrationContext.configure(sync_conn).get_current_heads())) or None

    async with db.engine.begin() as conn:
        return await conn.run_sync(_run)
