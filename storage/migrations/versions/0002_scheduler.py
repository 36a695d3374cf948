"""scheduler: reminder and escalation ladder on requests, digest runs

Revision ID: 0002_scheduler
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.models

revision = "0002_scheduler"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reminders_sent", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("remind_every_s", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("remind_max", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("escalated_at", storage.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("on_expiry", sa.String(length=16), server_default="reject", nullable=False))
        batch_op.add_column(sa.Column("extended_at", storage.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_requests_status_remind", ["status", "remind_at"], unique=False)
        batch_op.create_index("ix_requests_status_escalate", ["status", "escalate_at"], unique=False)

    op.create_table(
        "digest_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=64), nullable=False),
        sa.Column("at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("request_count", sa.Integer(), nullable=False),
        sa.Column("posted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", "period", name="uq_digest_runs_name_period"),
    )


def downgrade() -> None:
    op.drop_table("digest_runs")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_index("ix_requests_status_escalate")
        batch_op.drop_index("ix_requests_status_remind")
        batch_op.drop_column("extended_at")
        batch_op.drop_column("on_expiry")
        batch_op.drop_column("escalated_at")
        batch_op.drop_column("remind_max")
        batch_op.drop_column("remind_every_s")
        batch_op.drop_column("reminders_sent")
