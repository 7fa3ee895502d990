"""The audit log: every change to policies, assignments and review items, with before and after."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.store.schema import AuditEntry


def iso_utc(at: datetime | None) -> str | None:
    """ISO 8601 in UTC (SQLite hands back naive datetimes: they are UTC)."""
    if at is None:
        return None
    return (at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc)).isoformat()


def record(
    session: Session,
    actor: str,
    action: str,
    entity: str,
    entity_id: str | int,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    """Add one entry in the caller's transaction (it commits or rolls back with the change)."""
    session.add(
        AuditEntry(actor=actor, action=action, entity=entity, entity_id=str(entity_id), before=before, after=after)
    )


def entry_dict(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": iso_utc(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "entity": entry.entity,
        "entity_id": entry.entity_id,
        "before": entry.before,
        "after": entry.after,
    }


def entries(
    session: Session, *, entity: str | None = None, entity_id: str | None = None, after_id: int = 0, limit: int = 100
) -> list[dict[str, Any]]:
    query = select(AuditEntry).where(AuditEntry.id > after_id).order_by(AuditEntry.id).limit(limit)
    if entity is not None:
        query = query.where(AuditEntry.entity == entity)
    if entity_id is not None:
        query = query.where(AuditEntry.entity_id == entity_id)
    return [entry_dict(e) for e in session.scalars(query)]
