"""The tables (SQLAlchemy 2 declarative models). Alembic's migrations (``migrations/versions``)
create exactly these; tests/test_store.py checks that the two agree on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: DateTime(timezone=True)}


class Policy(Base):
    """A named policy; its rules are in ``PolicyVersion`` rows, the newest being ``current_version``."""

    __tablename__ = "policies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    current_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PolicyVersion(Base):
    """One version of a policy's rules (a JSON document, service/moderation/policy.py); never changed."""

    __tablename__ = "policy_versions"
    __table_args__ = (UniqueConstraint("policy_id", "version", name="uq_policy_versions_policy_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("policies.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    rules: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))


class PolicyAssignment(Base):
    """Which policy an API key's answers follow; key name ``*`` is the default (open gateway too)."""

    __tablename__ = "policy_assignments"

    key_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("policies.id", ondelete="CASCADE"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReviewItem(Base):
    """A meme kept for a person to look at: why, what the models said, and what the person decided."""

    __tablename__ = "review_items"
    __table_args__ = (
        Index("ix_review_items_status_id", "status", "id"),
        Index("ix_review_items_image_sha256", "image_sha256"),
        Index("ix_review_items_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(16))  # pending, claimed, decided
    reason: Mapped[str] = mapped_column(String(16))  # review (the policy said so) or sample
    client: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    policy_name: Mapped[str] = mapped_column(String(64))
    policy_version: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))  # the policy's action when it was classified
    decision: Mapped[dict[str, Any]]  # the answer's decision block
    image_sha256: Mapped[str | None] = mapped_column(String(64))
    image_phash: Mapped[int | None] = mapped_column(BigInteger)  # 64-bit dHash as a signed integer
    thumbnail: Mapped[bytes | None] = mapped_column(LargeBinary)  # small JPEG
    image: Mapped[bytes | None] = mapped_column(LargeBinary)  # the upload, only when the policy keeps it
    image_media_type: Mapped[str | None] = mapped_column(String(64))
    images_deleted_at: Mapped[datetime | None]
    text: Mapped[str] = mapped_column(Text)
    result: Mapped[dict[str, Any]]  # the classification answer: scores, labels, votes
    model_version: Mapped[str] = mapped_column(String(128))
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None]
    decided_action: Mapped[str | None] = mapped_column(String(16))
    corrected_labels: Mapped[dict[str, Any] | None]
    note: Mapped[str | None] = mapped_column(Text)


class AuditEntry(Base):
    """One change: who, when, what (``action`` on ``entity`` ``entity_id``), before and after."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_entity", "entity", "entity_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]
