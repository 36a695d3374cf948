"""SQLAlchemy 2 typed models. Every time is stored as UTC and read back timezone-aware."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as UTC; SQLite hands back naive values, which are UTC by construction."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use the injected clock")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSONType, list[Any]: JSONType}


class Request(Base):
    __tablename__ = "requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    tool: Mapped[str] = mapped_column(String(64))
    args: Mapped[dict[str, Any]]
    final_args: Mapped[dict[str, Any] | None]
    context: Mapped[dict[str, Any]]
    agent: Mapped[str] = mapped_column(String(128))
    risk: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str | None] = mapped_column(String(64))
    reviewers: Mapped[list[Any]]
    required_approvals: Mapped[int] = mapped_column(Integer, default=1)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]
    decision_kind: Mapped[str | None] = mapped_column(String(16))
    decided_by_id: Mapped[str | None] = mapped_column(String(128))
    decided_by_name: Mapped[str | None] = mapped_column(String(256))
    decided_via: Mapped[str | None] = mapped_column(String(16))
    feedback: Mapped[str | None] = mapped_column(Text)
    rule: Mapped[str | None] = mapped_column(String(128))
    result: Mapped[dict[str, Any] | None]
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    body_hash: Mapped[str | None] = mapped_column(String(64))
    callback_url: Mapped[str | None] = mapped_column(String(2048))
    slack_channel: Mapped[str | None] = mapped_column(String(64))
    slack_ts: Mapped[str | None] = mapped_column(String(32))
    slack_permalink: Mapped[str | None] = mapped_column(String(512))
    remind_at: Mapped[datetime | None]
    escalate_at: Mapped[datetime | None]
    # The reminder and escalation ladder (migration 0002_scheduler): what is due next lives in the row.
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    remind_every_s: Mapped[int | None] = mapped_column(Integer)
    remind_max: Mapped[int | None] = mapped_column(Integer)
    escalated_at: Mapped[datetime | None]
    on_expiry: Mapped[str] = mapped_column(String(16), default="reject", server_default="reject")
    extended_at: Mapped[datetime | None]
    # Reviewed together on one batch card (migration 0004_batches): an API batch or a coalesced burst.
    batch_id: Mapped[str | None] = mapped_column(String(32), default=None)

    labels: Mapped[list[Label]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", order_by="Label.label"
    )
    approvals: Mapped[list[Approval]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", order_by="Approval.id"
    )

    __table_args__ = (
        UniqueConstraint("agent", "idempotency_key", name="uq_requests_agent_idempotency"),
        Index("ix_requests_status_expires", "status", "expires_at"),
        Index("ix_requests_agent_id", "agent", "id"),
        Index("ix_requests_tool_id", "tool", "id"),
        Index("ix_requests_decided_at", "decided_at"),
    )


class Label(Base):
    __tablename__ = "request_labels"

    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id", ondelete="CASCADE"), primary_key=True)
    label: Mapped[str] = mapped_column(String(64), primary_key=True)

    __table_args__ = (Index("ix_request_labels_label", "label", "request_id"),)


class Approval(Base):
    """One reviewer's approval of one version of a request's args."""

    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    reviewer_id: Mapped[str] = mapped_column(String(128))
    reviewer_name: Mapped[str] = mapped_column(String(256))
    via: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("request_id", "version", "reviewer_id", name="uq_approvals_request_version_reviewer"),
    )


class AuditEvent(Base):
    """Append-only trail of every step a request goes through."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    request_id: Mapped[str | None] = mapped_column(String(32), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[str | None] = mapped_column(String(128))
    actor_name: Mapped[str | None] = mapped_column(String(256))
    via: Mapped[str | None] = mapped_column(String(16))
    at: Mapped[datetime]
    data: Mapped[dict[str, Any]]
    seq: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), unique=True)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))


class ApiToken(Base):
    """An API credential. Only the SHA-256 of the secret is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class OutboxItem(Base):
    """Outgoing work (webhooks, Slack posts) written in the same transaction as the change causing it."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    request_id: Mapped[str | None] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(128), unique=True)
    payload: Mapped[dict[str, Any]]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    locked_until: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    dead_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_outbox_due", "delivered_at", "dead_at", "next_attempt_at"),)


class KeyValue(Base):
    """Small server-wide values, such as the generated webhook signing secret."""

    __tablename__ = "kv"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


# --- scheduler (migration 0002_scheduler) -----------------------------------------------------------------

Index("ix_requests_status_remind", Request.status, Request.remind_at)
Index("ix_requests_status_escalate", Request.status, Request.escalate_at)


class DigestRun(Base):
    """One digest sent (or found empty) for one period: the unique pair keeps replicas from sending twice."""

    __tablename__ = "digest_runs"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    period: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]
    request_count: Mapped[int] = mapped_column(Integer, default=0)
    posted: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (UniqueConstraint("name", "period", name="uq_digest_runs_name_period"),)


# --- batches (migration 0004_batches) --------------------------------------------------------------------------

Index("ix_requests_batch_id", Request.batch_id, Request.id)
Index("ix_requests_channel_status", Request.channel, Request.status, Request.id)
Index("ix_requests_status_id", Request.status, Request.id)  # pending pages, newest first, without a sort
Index("ix_requests_decided_by", Request.decided_by_id, Request.decided_at)
Index("ix_approvals_reviewer", Approval.reviewer_id, Approval.at)


class Batch(Base):
    """Requests reviewed on one card: submitted together (``kind`` api) or coalesced from a burst (burst)."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    agent: Mapped[str | None] = mapped_column(String(128))
    channel: Mapped[str | None] = mapped_column(String(64))
    item_count: Mapped[int] = mapped_column(Integer, default=0)
    request_ids: Mapped[list[Any]]  # in the order they were submitted: the order the card lists them
    created_at: Mapped[datetime]
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    body_hash: Mapped[str | None] = mapped_column(String(64))
    slack_channel: Mapped[str | None] = mapped_column(String(64))
    slack_ts: Mapped[str | None] = mapped_column(String(32))
    slack_permalink: Mapped[str | None] = mapped_column(String(512))

    __table_args__ = (UniqueConstraint("agent", "idempotency_key", name="uq_batches_agent_idempotency"),)


class BatchMessage(Base):
    """One Slack message of a batch card: part 0 is the card, later parts are replies in its thread."""

    __tablename__ = "batch_messages"

    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True)
    part: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(64))
    ts: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime]


class GrantRow(Base):
    """A time-boxed auto-approval a reviewer granted from a card: this agent, this tool (optionally these args)."""

    __tablename__ = "grants"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    agent: Mapped[str] = mapped_column(String(128))
    tool: Mapped[str] = mapped_column(String(64))
    args: Mapped[dict[str, Any] | None]
    request_id: Mapped[str | None] = mapped_column(String(32))
    created_by_id: Mapped[str] = mapped_column(String(128))
    created_by_name: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(256))

    __table_args__ = (Index("ix_grants_expires", "expires_at"),)


class PolicyBudget(Base):
    """How many auto-approvals a budget rule has given an agent in one fixed window."""

    __tablename__ = "policy_budgets"

    rule: Mapped[str] = mapped_column(String(128), primary_key=True)
    agent: Mapped[str] = mapped_column(String(128), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(primary_key=True)
    used: Mapped[int] = mapped_column(Integer)
