"""Per-client rate limits: a token bucket per API key (``rate_per_minute`` refill, ``burst`` size).

A request costs one token per meme (a batch of 10 costs 10). Over the limit: 429 with
``Retry-After`` (whole seconds until enough tokens are back).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from service.core.errors import ApiError


@dataclass
class Bucket:
    tokens: float
    updated: float


def refill(tokens: float, elapsed_s: float, rate_per_s: float, capacity: float) -> float:
    """Token bucket refill: min(capacity, tokens + elapsed * rate)."""
    return min(capacity, tokens + max(0.0, elapsed_s) * rate_per_s)


def wait_for(tokens: float, cost: float, rate_per_s: float) -> float:
    """Seconds until the bucket holds ``cost`` tokens (0 if it already does)."""
    return 0.0 if tokens >= cost else (cost - tokens) / rate_per_s


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, Bucket] = {}  # one per configured key: bounded
        self._lock = threading.Lock()

    def take(self, client: str, cost: int, rate_per_minute: float, burst: int) -> float:
        """Take ``cost`` tokens from ``client``'s bucket; returns 0 on success, else the seconds to
        wait (nothing is taken then). ``inf`` when ``cost`` exceeds ``burst`` (never possible)."""
        if cost > burst:
            return math.inf
        rate = rate_per_minute / 60.0
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(client)
            if bucket is None:
                bucket = self._buckets[client] = Bucket(float(burst), now)
            bucket.tokens = refill(bucket.tokens, now - bucket.updated, rate, burst)
            bucket.updated = now
            wait = wait_for(bucket.tokens, cost, rate)
            if wait == 0.0:
                bucket.tokens -= cost
            return wait

    def check(self, client: str, cost: int, rate_per_minute: float, burst: int) -> None:
        """:meth:`take`, raising the API's 429 (or 413 for a batch larger than the burst)."""
        wait = self.take(client, cost, rate_per_minute, burst)
        if wait == 0.0:
            return
        if math.isinf(wait):
            raise ApiError(
                413,
                "batch_over_rate_limit",
                f"this request holds {cost} memes but client '{client}' may send at most {burst} at once; "
                "split it into smaller batches",
            )
        retry_after = max(1, math.ceil(wait))
        raise ApiError(
            429,
            "rate_limited",
            f"client '{client}' is over its limit of {rate_per_minute:g} memes per minute "
            f"(burst {burst}); retry after {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
