"""A circuit breaker for a dependency the gateway can do without (the shared result cache's Redis).

Closed: every call goes through. A call that fails opens it: for ``backoff_s`` every call is
skipped at once (the caller does without), so a frozen dependency costs one time-out per period,
not one (or two) per request. When the period is over, one caller -- and only one, the others keep
skipping -- tries again: success closes the breaker, failure opens it for another period. Each
change is logged once and reported to ``observe`` (metrics).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("memotion.gateway")


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        backoff_s: float,
        observe: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if backoff_s < 0:
            raise ValueError("backoff_s must not be negative")
        self.name = name
        self.backoff_s = backoff_s
        self.observe = observe  # told "open", "closed" (state changes) and "skipped" (each skipped call)
        self._clock = clock
        self._lock = threading.Lock()
        self._open_until: float | None = None  # None: closed
        self._trying = False  # one caller is trying the dependency after a period

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    def allow(self) -> bool:
        """Whether to call the dependency now (a caller told True must report ``success``/``failure``)."""
        with self._lock:
            if self._open_until is None:
                return True
            if self._trying or self._clock() < self._open_until:
                skipped = True
            else:
                self._trying, skipped = True, False
        if skipped:
            self._tell("skipped")
        return not skipped

    def success(self) -> None:
        with self._lock:
            was_open, self._open_until, self._trying = self._open_until is not None, None, False
        if was_open:
            logger.warning("%s answers again: using it again", self.name)
            self._tell("closed")

    def failure(self, error: BaseException) -> None:
        with self._lock:
            was_open = self._open_until is not None
            self._open_until, self._trying = self._clock() + self.backoff_s, False
        if not was_open:
            self._tell("open")
        logger.warning("%s failed (%s): skipping it for %g s", self.name, error, self.backoff_s)

    def _tell(self, event: str) -> None:
        if self.observe is not None:
            try:
                self.observe(event)
            except Exception as err:  # metrics never fail a request
                logger.debug("circuit breaker metrics: %s", err)
