"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import storage.models

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    
    op.create_table('api_tokens',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('created_at', storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', storage.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name'),
    sa.UniqueConstraint('token_hash')
    )
    op.create_table('audit_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('request_id', sa.String(length=32), nullable=True),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('actor_id', sa.String(length=128), nullable=True),
    sa.Column('actor_name', sa.String(length=256), nullable=True),
    sa.Column('via', sa.String(length=16), nullable=True),
    sa.Column('at', storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('data', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_events_request_id'), ['request_id'], unique=False)

    op.create_table('kv',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('request_id', sa.String(length=32), nullable=True),
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('locked_until', storage.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('delivered_at', storage.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('dead_at', storage.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_due', ['delivered_at', 'dead_at', 'next_attempt_at'], unique=False)

    op.create_table('requests',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('tool', sa.String(length=64), nullable=False),
    sa.Column('args', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('final_args', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('context', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('agent', sa.String(length=128), nullable=False),
    sa.Column('risk', sa.String(length=16), nullable=False),
    sa.Column('channel', sa.String(length=64), nullable=True),
    sa.Column('reviewers', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('required_approvals', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('decided_at', storage.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('decision_kind', sa.String(length=16), nullable=True),
    sa.Column('decided_by_id', sa.String(length=128), nullable=True),
    sa.Column('decided_by_name', sa.String(length=256), nullable=True),
    sa.Column('decided_via', sa.String(length=16), nullable=True),
    sa.Column('feedback', sa.Text(), nullable=True),
    sa.Column('rule', sa.String(length=128), nullable=True),
    sa.Column('result', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('idempotency_key', sa.String(length=255), nullable=True),
    sa.Column('body_hash', sa.String(length=64), nullable=True),
    sa.Column('callback_url', sa.String(length=2048), nullable=True),
    sa.Column('slack_channel', sa.String(length=64), nullable=True),
    sa.Column('slack_ts', sa.String(length=32), nullable=True),
    sa.Column('slack_permalink', sa.String(length=512), nullable=True),
    sa.Column('remind_at', storage.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('escalate_at', storage.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('agent', 'idempotency_key', name='uq_requests_agent_idempotency')
    )
    with op.batch_alter_table('requests', schema=None) as batch_op:
        batch_op.create_index('ix_requests_agent_id', ['agent', 'id'], unique=False)
        batch_op.create_index('ix_requests_decided_at', ['decided_at'], unique=False)
        batch_op.create_index('ix_requests_status_expires', ['status', 'expires_at'], unique=False)
        batch_op.create_index('ix_requests_tool_id', ['tool', 'id'], unique=False)

    op.create_table('approvals',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('request_id', sa.String(length=32), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('reviewer_id', sa.String(length=128), nullable=False),
    sa.Column('reviewer_name', sa.String(length=256), nullable=False),
    sa.Column('via', sa.String(length=16), nullable=False),
    sa.Column('at', storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['requests.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('request_id', 'version', 'reviewer_id', name='uq_approvals_request_version_reviewer')
    )
    op.create_table('request_labels',
    sa.Column('request_id', sa.String(length=32), nullable=False),
    sa.Column('label', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['requests.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('request_id', 'label')
    )
    with op.batch_alter_table('request_labels', schema=None) as batch_op:
        batch_op.create_index('ix_request_labels_label', ['label', 'request_id'], unique=False)

    


def downgrade() -> None:
    
    with op.batch_alter_table('request_labels', schema=None) as batch_op:
        batch_op.drop_index('ix_request_labels_label')

    op.drop_table('request_labels')
    op.drop_table('approvals')
    with op.batch_alter_table('requests', schema=None) as batch_op:
        batch_op.drop_index('ix_requests_tool_id')
        batch_op.drop_index('ix_requests_status_expires')
        batch_op.drop_index('ix_requests_decided_at')
        batch_op.drop_index('ix_requests_agent_id')

    op.drop_table('requests')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_due')

    op.drop_table('outbox')
    op.drop_table('kv')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_events_request_id'))

    op.drop_table('audit_events')
    op.drop_table('api_tokens')
    
