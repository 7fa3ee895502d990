"""Delete queued images (thumbnails and full images) older than ``MEMOTION_REVIEW_RETENTION_DAYS``:
at start-up and then every ``interval_s`` in a background thread. Items, decisions, labels and the
audit log stay; only the pictures go."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from service.moderation.review_store import purge_images
from service.store.engine import Database
from service.store.schema import utcnow

logger = logging.getLogger("memotion.gateway")


def purge_expired_images(db: Database, days: int) -> int:
    """How many items lost their images (0 when ``days`` is 0: keep them)."""
    if days <= 0:
        return 0
    with db.session() as session:
        count = purge_images(session, utcnow() - timedelta(days=days))
    if count:
        logger.info("retention: deleted the images of %d review items older than %d days", count, days)
    return count


class RetentionWorker:
    def __init__(self, db: Database, days: int, interval_s: float = 3600.0) -> None:
        self.db, self.days, self.interval_s = db, days, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memotion-retention", daemon=True)

    def start(self) -> None:
        if self.days > 0:
            self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                purge_expired_images(self.db, self.days)
            except Exception as err:
                logger.warning("retention: could not delete old images: %s", err)
            if self._stop.wait(self.interval_s):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
