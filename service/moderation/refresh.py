"""Bounded staleness for the request path's caches: reload at most every ``refresh_s`` seconds (at
once after ``invalidate()``); a reload that fails keeps the last state, logged, until the next try."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("memotion.gateway")


class Refresher:
    def __init__(
        self, load: Callable[[], None], refresh_s: float, what: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._load, self._refresh_s, self._what, self._clock = load, refresh_s, what, clock
        self._lock = threading.Lock()
        self._loaded_at: float | None = None

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = None

    def refresh(self) -> None:
        now = self._clock()
        with self._lock:
            if self._loaded_at is not None and now - self._loaded_at < self._refresh_s:
                return
            try:
                self._load()
            except Exception as err:  # keep the last state; try again after refresh_s
                logger.warning("cannot read %s (keeping the last ones): %s", self._what, err)
            self._loaded_at = now
