"""batches: requests reviewed together on one card (API batches and coalesced bursts), and the indexes the
/signoff lists, App Home and stats read through

Revision ID: 0004_batches
Revises: 0003_merge
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import storage.models

revision = "0004_batches"
down_revision = "0003_merge"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("agent", sa.String(length=128), nullable=True),
        sa.Column("channel", sa.String(length=64), nullable=True),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("request_ids", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                  nullable=False),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("body_hash", sa.String(length=64), nullable=True),
        sa.Column("slack_channel", sa.String(length=64), nullable=True),
        sa.Column("slack_ts", sa.String(length=32), nullable=True),
        sa.Column("slack_permalink", sa.String(length=512), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("agent", "idempotency_key", name="uq_batches_agent_idempotency"),
    )
    op.create_table(
        "batch_messages",
        sa.Column("batch_id", sa.String(length=32), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("ts", sa.String(length=32), nullable=False),
        sa.Column("at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("batch_id", "part"),
    )
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("batch_id", sa.String(length=32), nullable=True))
        batch_op.create_index("ix_requests_batch_id", ["batch_id", "id"], unique=False)
        batch_op.create_index("ix_requests_channel_status", ["channel", "status", "id"], unique=False)
        batch_op.create_index("ix_requests_status_id", ["status", "id"], unique=False)
        batch_op.create_index("ix_requests_decided_by", ["decided_by_id", "decided_at"], unique=False)
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.create_index("ix_approvals_reviewer", ["reviewer_id", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_index("ix_approvals_reviewer")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_index("ix_requests_decided_by")
        batch_op.drop_index("ix_requests_status_id")
        batch_op.drop_index("ix_requests_channel_status")
        batch_op.drop_index("ix_requests_batch_id")
        batch_op.drop_column("batch_id")
    op.drop_table("batch_messages")
    op.drop_table("batches")
