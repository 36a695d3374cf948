"""join the audit-chain and scheduler branches into one line

Revision ID: 0003_merge
Revises: 0002_audit, 0002_scheduler
Create Date: 2026-11-22
"""

from __future__ import annotations

revision = "0003_merge"
down_revision = ("0002_audit", "0002_scheduler")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
