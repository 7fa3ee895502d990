"""The review queue in the database: items kept for a person, claimed, decided; reposts found by
image SHA-256 or perceptual-hash distance; images deleted after the retention period. Every change
is audited (service/moderation/audit.py)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.moderation.audit import iso_utc, record
from service.moderation.image_hash import hamming
from service.store.schema import ReviewItem, utcnow

STATUSES = ("pending", "claimed", "decided")
REPOST_SCAN_LIMIT = 100_000  # decided items compared by perceptual hash, newest first
CLAIM_EXPIRES_AFTER = timedelta(minutes=30)  # then another moderator may claim or decide the item


class ItemNotFound(LookupError):
    pass


class ItemConflict(RuntimeError):
    """The item is not in a state that allows this (claimed by someone else, already decided)."""


@dataclass(frozen=True)
class NewItem:
    reason: str  # review or sample
    client: str
    request_id: str | None
    policy_name: str
    policy_version: int
    action: str
    decision: dict[str, Any]
    text: str
    result: dict[str, Any]
    model_version: str
    image_sha256: str | None = None
    image_phash: int | None = None
    thumbnail: bytes | None = None
    image: bytes | None = None
    image_media_type: str | None = None


def add_item(session: Session, item: NewItem) -> int:
    row = ReviewItem(status="pending", **item.__dict__)
    session.add(row)
    session.flush()
    record(session, item.client, "review.create", "review_item", row.id, None, _state(row))
    return row.id


def _state(row: ReviewItem) -> dict[str, Any]:
    """The fields a change can touch (what the audit log keeps before and after)."""
    return {
        "status": row.status,
        "claimed_by": row.claimed_by,
        "decided_by": row.decided_by,
        "decided_action": row.decided_action,
        "corrected_labels": row.corrected_labels,
        "note": row.note,
    }


def item_dict(row: ReviewItem, *, full: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id,
        "created_at": iso_utc(row.created_at),
        "status": row.status,
        "reason": row.reason,
        "client": row.client,
        "policy": row.policy_name,
        "policy_version": row.policy_version,
        "action": row.action,
        "decision": row.decision,
        "image_sha256": row.image_sha256,
        "has_thumbnail": row.thumbnail is not None,
        "has_image": row.image is not None,
        "text": row.text,
        "model_version": row.model_version,
        "claimed_by": row.claimed_by,
        "claimed_at": iso_utc(row.claimed_at),
        "decided_by": row.decided_by,
        "decided_at": iso_utc(row.decided_at),
        "decided_action": row.decided_action,
        "corrected_labels": row.corrected_labels,
        "note": row.note,
    }
    if full:
        out["result"] = row.result
        out["image_phash"] = None if row.image_phash is None else format(row.image_phash & (2**64 - 1), "016x")
        out["thumbnail_base64"] = base64.b64encode(row.thumbnail).decode() if row.thumbnail else None
    return out


def get_row(session: Session, item_id: int) -> ReviewItem:
    row = session.get(ReviewItem, item_id)
    if row is None:
        raise ItemNotFound(f"no review item {item_id}")
    return row


def list_items(
    session: Session,
    *,
    status: str | None = None,
    action: str | None = None,
    policy: str | None = None,
    client: str | None = None,
    after_id: int = 0,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], int | None]:
    """One page, oldest first; the cursor for the next page (None: this was the last)."""
    query = select(ReviewItem).where(ReviewItem.id > after_id).order_by(ReviewItem.id).limit(limit + 1)
    for column, value in (
        (ReviewItem.status, status),
        (ReviewItem.action, action),
        (ReviewItem.policy_name, policy),
        (ReviewItem.client, client),
    ):
        if value is not None:
            query = query.where(column == value)
    rows = list(session.scalars(query))
    page = rows[:limit]
    return [item_dict(r) for r in page], (page[-1].id if len(rows) > limit else None)


def _open_row(session: Session, item_id: int, actor: str) -> ReviewItem:
    """The item, if ``actor`` may claim or decide it: not decided, not claimed by someone else."""
    row = get_row(session, item_id)
    if row.status == "decided":
        raise ItemConflict(f"review item {item_id} is already decided (by {row.decided_by})")
    if row.status == "claimed" and row.claimed_by != actor and not _claim_expired(row.claimed_at):
        raise ItemConflict(f"review item {item_id} is claimed by {row.claimed_by}")
    return row


def _claim_expired(claimed_at: datetime | None) -> bool:
    """A claim older than CLAIM_EXPIRES_AFTER no longer holds the item (its moderator went away)."""
    if claimed_at is None:
        return True
    at = claimed_at if claimed_at.tzinfo is not None else claimed_at.replace(tzinfo=timezone.utc)
    return utcnow() - at > CLAIM_EXPIRES_AFTER


def claim(session: Session, item_id: int, actor: str) -> dict[str, Any]:
    row = _open_row(session, item_id, actor)
    before = _state(row)
    row.status, row.claimed_by, row.claimed_at = "claimed", actor, utcnow()
    record(session, actor, "review.claim", "review_item", item_id, before, _state(row))
    return item_dict(row)


def decide(
    session: Session, item_id: int, actor: str, action: str, labels: dict[str, str], note: str | None
) -> dict[str, Any]:
    """Record a person's decision and corrected labels (a full set of head -> label)."""
    row = _open_row(session, item_id, actor)
    before = _state(row)
    row.status, row.decided_by, row.decided_at = "decided", actor, utcnow()
    row.decided_action, row.corrected_labels, row.note = action, labels, note
    record(session, actor, "review.decide", "review_item", item_id, before, _state(row))
    return item_dict(row)


def decided_reposts(
    session: Session, sha256: str | None, phash: int | None, max_distance: int, exclude_id: int | None = None
) -> list[dict[str, Any]]:
    """Decided items showing the same meme: same bytes first, then the nearest perceptual hashes."""
    found: dict[int, dict[str, Any]] = {}
    decided = select(ReviewItem).where(ReviewItem.status == "decided")
    if sha256 is not None:
        for row in session.scalars(decided.where(ReviewItem.image_sha256 == sha256).order_by(ReviewItem.id.desc())):
            found[row.id] = {**_repost(row), "match": "sha256", "distance": 0}
    if phash is not None:
        rows = session.execute(
            select(ReviewItem.id, ReviewItem.image_phash)
            .where(ReviewItem.status == "decided", ReviewItem.image_phash.is_not(None))
            .order_by(ReviewItem.id.desc())
            .limit(REPOST_SCAN_LIMIT)
        ).all()
        if rows:
            distances = hamming(np.array([r[1] for r in rows], dtype=np.int64), phash)
            for (item_id, _), distance in sorted(zip(rows, distances.tolist()), key=lambda x: x[1]):
                if distance <= max_distance and item_id not in found:
                    found[item_id] = {**_repost(get_row(session, item_id)), "match": "phash", "distance": distance}
    found.pop(exclude_id, None)  # type: ignore[arg-type]
    return list(found.values())[:10]


def _repost(row: ReviewItem) -> dict[str, Any]:
    return {
        "review_id": row.id,
        "decided_action": row.decided_action,
        "decided_at": iso_utc(row.decided_at),
        "corrected_labels": row.corrected_labels,
        "text": row.text,
    }


def purge_images(session: Session, older_than: datetime, actor: str = "retention") -> int:
    """Delete the thumbnails and images of items created before ``older_than``; how many items."""
    ids = list(
        session.scalars(
            select(ReviewItem.id).where(ReviewItem.created_at < older_than, ReviewItem.images_deleted_at.is_(None))
        )
    )
    if not ids:
        return 0
    session.execute(
        update(ReviewItem).where(ReviewItem.id.in_(ids)).values(thumbnail=None, image=None, images_deleted_at=utcnow())
    )
    record(session, actor, "review.purge_images", "review_item", f"{len(ids)} items", None, {"ids": ids[:1000]})
    return len(ids)


def decided_items(session: Session) -> list[ReviewItem]:
    return list(session.scalars(select(ReviewItem).where(ReviewItem.status == "decided").order_by(ReviewItem.id)))
