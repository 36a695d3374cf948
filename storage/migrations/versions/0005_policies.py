"""policies: grants from cards and per-agent budget counters

Revision ID: 0005_policies
Revises: 0004_batches
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import storage.models

revision = "0005_policies"
down_revision = "0004_batches"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_TIME = storage.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "grants",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("agent", sa.String(length=128), nullable=False),
        sa.Column("tool", sa.String(length=64), nullable=False),
        sa.Column("args", _JSON, nullable=True),
        sa.Column("request_id", sa.String(length=32), nullable=True),
        sa.Column("created_by_id", sa.String(length=128), nullable=False),
        sa.Column("created_by_name", sa.String(length=256), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
        sa.Column("revoked_at", _TIME, nullable=True),
        sa.Column("revoked_by", sa.String(length=256), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_grants_expires", "grants", ["expires_at"], unique=False)
    op.create_table(
        "policy_budgets",
        sa.Column("rule", sa.String(length=128), nullable=False),
        sa.Column("agent", sa.String(length=128), nullable=False),
        sa.Column("window_start", _TIME, nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("rule", "agent", "window_start"),
    )


def downgrade() -> None:
    op.drop_table("policy_budgets")
    op.drop_index("ix_grants_expires", table_name="grants")
    op.drop_table("grants")
