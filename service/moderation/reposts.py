"""Which decided memes a new one repeats: an in-memory index of the decided items' SHA-256 and
perceptual hashes, re-read from the database at most every ``refresh_s`` seconds (at once after a
decision made through this process), so a request compares hashes without a database read."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, select

from service.moderation.image_hash import hamming
from service.moderation.refresh import Refresher
from service.store.engine import Database
from service.store.schema import ReviewItem

INDEX_LIMIT = 200_000  # newest decided items kept in the index


@dataclass(frozen=True)
class Repost:
    review_id: int
    decided_action: str
    match: str  # sha256 or phash
    distance: int


class RepostIndex:
    def __init__(self, db: Database, refresh_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._db = db
        self._loaded_stamp: tuple[int, Any] | None = None
        self._by_sha: dict[str, tuple[int, str]] = {}
        self._ids = np.zeros(0, dtype=np.int64)
        self._hashes = np.zeros(0, dtype=np.int64)
        self._actions: list[str] = []
        self._refresher = Refresher(self._load_if_changed, refresh_s, "the decided memes", clock)

    def invalidate(self) -> None:
        self._refresher.invalidate()

    def _load_if_changed(self) -> None:
        stamp = self._stamp()
        if stamp != self._loaded_stamp:  # reload only when a decision was added or changed
            self._load()
            self._loaded_stamp = stamp

    def _stamp(self) -> tuple[int, Any]:
        """How many decided items there are and the newest decision: cheap, and it changes with them."""
        query = select(func.count(), func.max(ReviewItem.decided_at)).where(ReviewItem.status == "decided")
        with self._db.session() as session:
            count, newest = session.execute(query).one()
        return int(count), newest

    def _load(self) -> None:
        query = (
            select(ReviewItem.id, ReviewItem.image_sha256, ReviewItem.image_phash, ReviewItem.decided_action)
            .where(ReviewItem.status == "decided")
            .order_by(ReviewItem.id.desc())
            .limit(INDEX_LIMIT)
        )
        with self._db.session() as session:
            rows = session.execute(query).all()
        self._by_sha = {}
        for item_id, sha, _, action in reversed(rows):  # the newest decision of a SHA-256 wins
            if sha:
                self._by_sha[sha] = (item_id, action or "allow")
        hashed = [(i, h, a or "allow") for i, _, h, a in rows if h is not None]
        self._ids = np.array([i for i, _, _ in hashed], dtype=np.int64)
        self._hashes = np.array([h for _, h, _ in hashed], dtype=np.int64)
        self._actions = [a for _, _, a in hashed]

    @property
    def empty(self) -> bool:
        self._refresher.refresh()
        return not self._by_sha and not len(self._ids)

    def find(self, sha256: str | None, phash: int | None, max_distance: int) -> Repost | None:
        """The newest decided item with the same bytes, else the nearest picture within ``max_distance`` bits."""
        self._refresher.refresh()
        if sha256 is not None and sha256 in self._by_sha:
            item_id, action = self._by_sha[sha256]
            return Repost(item_id, action, "sha256", 0)
        if phash is None or not len(self._hashes):
            return None
        distances = hamming(self._hashes, phash)
        best = int(np.argmin(distances))  # ties: the first, the newest
        if distances[best] > max_distance:
            return None
        return Repost(int(self._ids[best]), self._actions[best], "phash", int(distances[best]))
