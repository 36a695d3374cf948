"""Apply Alembic migrations to the configured database (used by ``signoff serve`` and ``signoff db upgrade``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from storage.db import Database

MIGRATIONS = Path(__file__).with_name("migrations")
_LOCK_KEY = 0x5167_0FF0  # advisory lock: replicas starting together migrate one at a time


def alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revisions() -> tuple[str, ...]:
    return tuple(ScriptDirectory.from_config(alembic_config()).get_heads())


async def upgrade(db: Database) -> str | None:
    """Bring the schema to the newest revision(s); returns the revision(s) now applied."""
    cfg = alembic_config()

    def _run(sync_conn: Any) -> str | None:
        if sync_conn.dialect.name == "postgresql":
            sync_conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, "heads")
        return ",".join(sorted(MigrationContext.configure(sync_conn).get_current_heads())) or None

    async with db.engine.begin() as conn:
        return await conn.run_sync(_run)
