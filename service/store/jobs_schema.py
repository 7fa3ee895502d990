"""The async jobs' tables (service/jobs): a job, its items (each with its result once scored) and
its webhook's delivery state. Created by migration ``0002_jobs``; leases and retry times are Unix
seconds (floats), compared the same way on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.store.schema import Base, utcnow


class Job(Base):
    """One job: who owns it, where its items came from, its progress, lease and webhook."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_created_at", "status", "created_at"),
        Index("ix_jobs_owner_created_at", "owner", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))  # the API key's name (anonymous: open gateway)
    status: Mapped[str] = mapped_column(String(16))  # queued, running, succeeded, failed, cancelled
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    source: Mapped[str] = mapped_column(String(16))  # items (inline) or path
    source_path: Mapped[str | None] = mapped_column(Text)
    thresholds: Mapped[dict[str, Any]]  # resolved Task B thresholds
    total: Mapped[int] = mapped_column(Integer)
    done: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)  # why the job failed as a whole
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires: Mapped[float] = mapped_column(Float, default=0.0)
    callback_url: Mapped[str | None] = mapped_column(Text)
    webhook_status: Mapped[str | None] = mapped_column(String(16))  # pending, delivered, failed
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0)
    webhook_next_at: Mapped[float] = mapped_column(Float, default=0.0)
    webhook_error: Mapped[str | None] = mapped_column(Text)


ITEM_ID_CHARS = 512  # the longest item id a job stores (PostgreSQL refuses a longer one)


class JobItem(Base):
    """One meme of a job: its input (base64 image or a file path, text) and, once scored, its flat
    record (service/scoring/local.py's shape), written in the same transaction as the job's progress."""

    __tablename__ = "job_items"
    __table_args__ = (Index("ix_job_items_pending", "job_id", "done", "position"),)

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[str] = mapped_column(String(ITEM_ID_CHARS))
    image: Mapped[str | None] = mapped_column(Text)  # base64 (inline jobs) or a file path (path jobs)
    text: Mapped[str | None] = mapped_column(Text)
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    record: Mapped[dict[str, Any] | None]
    scored_by: Mapped[str | None] = mapped_column(String(128))  # the worker that scored it
