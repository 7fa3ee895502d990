"""The result cache: a meme classified once is not classified again.

Memes are reposted again and again; the same bytes need not be decoded, read by OCR and run
through every model each time. Key: SHA-256 of the image bytes, the text sent (or "read by OCR"),
the model repository's version and the gateway's text configuration (OCR engine, text path). Value:
the classification before any per-request choice -- the text (as read or sent) and its text path,
and what the members said (their votes and the ensemble's mean probabilities per head, from which
Task A/B/C follow) -- so Task B thresholds and the response are applied after the cache and stay
per request. An answer is stored with its model version and never returned for another one.

``MemoryResultCache`` (default): in process, LRU, bounded in entries and bytes.
``RedisResultCache``: shared by every gateway replica and process (``MEMOTION_RESULT_CACHE=redis``);
entries expire after ``result_cache_ttl_s``; Redis down means misses, never failed requests, and
after a failure Redis is skipped for ``result_cache_backoff_s`` (a circuit breaker), so a frozen
Redis costs one time-out per period, not every request.
Per request: ``Cache-Control: no-cache`` classifies afresh (and stores the answer), ``no-store``
neither reads nor writes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Protocol

from service.core.settings import GatewaySettings
from service.inference.circuit_breaker import CircuitBreaker
from service.inference.classifier import ClassifyResult, MemeClassifier, TaskPrediction
from service.text.processing import TextStep

logger = logging.getLogger("memotion.gateway")

FORMAT = 1  # of the stored value; part of the key, so a new format never reads an old entry


class _Flight:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: bytes | None = None  # the leader's encoded answer; None if it failed


class SingleFlight:
    """Identical requests at the same time: the first classifies, the others wait for its answer
    (a burst of reposts costs one classification, not one each)."""

    def __init__(self, wait_s: float = 120.0) -> None:
        self.wait_s = wait_s
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}

    def join(self, key: str) -> tuple[_Flight, bool]:
        """The flight of ``key`` and whether the caller leads it (must call ``land``)."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                return flight, False
            flight = self._flights[key] = _Flight()
            return flight, True

    def land(self, key: str, flight: _Flight, value: bytes | None) -> None:
        with self._lock:
            self._flights.pop(key, None)
        flight.value = value
        flight.done.set()

    def wait(self, flight: _Flight) -> bytes | None:
        return flight.value if flight.done.wait(self.wait_s) else None


class ResultCache(Protocol):
    name: str
    flights: SingleFlight

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class CacheUse:
    """What one request may do with the cache (from its Cache-Control header)."""

    read: bool = True
    write: bool = True


def cache_use(cache_control: str | None) -> CacheUse:
    """``no-cache``: do not answer from the cache (store the fresh answer); ``no-store``: neither."""
    directives = {part.strip().split("=")[0].lower() for part in (cache_control or "").split(",")}
    if "no-store" in directives:
        return CacheUse(read=False, write=False)
    return CacheUse(read="no-cache" not in directives)


def classifier_fingerprint(classifier: MemeClassifier) -> str:
    """What besides the meme decides its answer: the model version, the OCR engine, the text path."""
    processor = classifier.text_processor
    text_config = processor.describe() if processor is not None else {}
    return json.dumps(
        [classifier.manifest.repository_version, classifier.ocr.name, text_config], sort_keys=True, default=str
    )


def cache_key(image: bytes | None, text: str | None, fingerprint: str) -> str:
    """SHA-256 over the image bytes' SHA-256, the text sent (None: read by OCR) and the fingerprint."""
    image_hash = hashlib.sha256(image).hexdigest() if image is not None else "no image"
    parts = [FORMAT, fingerprint, image_hash, "read by OCR" if text is None else ["sent", text]]
    # surrogatepass: the text gate keeps lone surrogates out, but a key must never be what fails
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8", "surrogatepass")).hexdigest()


def encode_result(result: ClassifyResult, model_version: str) -> bytes:
    """The classification (no timings) as JSON bytes, stamped with its model version."""
    body = asdict(result)
    body.pop("timings_ms", None)
    return json.dumps({"model_version": model_version, "result": body}, ensure_ascii=False).encode()


def decode_result(value: bytes, model_version: str) -> ClassifyResult | None:
    """The stored classification, or None if it is of another model version (or unreadable)."""
    try:
        stored = json.loads(value)
        if stored.get("model_version") != model_version:
            return None
        body = stored["result"]
        return ClassifyResult(
            text=body["text"],
            text_source=body["text_source"],
            tasks={name: TaskPrediction(**task) for name, task in body["tasks"].items()},
            task_b=dict(body["task_b"]),
            votes=body["votes"],
            timings_ms={},
            language=body.get("language"),
            text_steps=[TextStep(**step) for step in body.get("text_steps", [])],
        )
    except (ValueError, KeyError, TypeError) as err:
        logger.warning("result cache: an unreadable entry is ignored (%s)", err)
        return None


class MemoryResultCache:
    """In process, least recently used first out, at most ``max_entries`` and ``max_bytes``."""

    name = "memory"

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.flights = SingleFlight()

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: str, value: bytes) -> None:
        size = len(key) + len(value)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= len(key) + len(old)
            self._entries[key] = value
            self._bytes += size
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                evicted, data = self._entries.popitem(last=False)
                self._bytes -= len(evicted) + len(data)

    def close(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0


class RedisResultCache:
    """Shared by every replica: one Redis key per entry, expiring after ``ttl_s``. Behind a circuit
    breaker: after a failure (down, or frozen: ``timeout_s``) Redis is skipped for ``backoff_s``."""

    name = "redis"
    PREFIX = "memotion:result:"

    def __init__(
        self,
        url: str,
        ttl_s: int,
        max_bytes: int,
        timeout_s: float = 0.5,
        backoff_s: float = 30.0,
        observe: Callable[[str], None] | None = None,
    ) -> None:
        import redis

        self.url = url
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self.flights = SingleFlight()  # within this process; replicas share the stored answers
        self.breaker = CircuitBreaker(f"result cache: redis at {url}", backoff_s, observe)
        self._client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)

    def get(self, key: str) -> bytes | None:
        if not self.breaker.allow():
            return None  # Redis is sick: a miss, at no cost
        try:
            value = self._client.get(self.PREFIX + key)
        except Exception as err:  # Redis down or slow: a miss, never a failed request
            self.breaker.failure(err)
            return None
        self.breaker.success()
        return bytes(value) if value is not None else None  # type: ignore[arg-type]

    def put(self, key: str, value: bytes) -> None:
        if len(value) > self.max_bytes or not self.breaker.allow():
            return
        try:
            self._client.set(self.PREFIX + key, value, ex=self.ttl_s)
        except Exception as err:
            self.breaker.failure(err)
            return
        self.breaker.success()

    def close(self) -> None:
        self._client.close()


def create_result_cache(settings: GatewaySettings, observe: Callable[[str], None] | None = None) -> ResultCache | None:
    """The cache ``MEMOTION_RESULT_CACHE`` asks for (None: off); ``observe``: told the Redis circuit
    breaker's events (service/inference/circuit_breaker.py)."""
    if settings.result_cache == "none":
        return None
    if settings.result_cache == "redis":
        return RedisResultCache(
            settings.result_cache_redis_url,
            settings.result_cache_ttl_s,
            settings.result_cache_bytes,
            timeout_s=settings.result_cache_timeout_s,
            backoff_s=settings.result_cache_backoff_s,
            observe=observe,
        )
    return MemoryResultCache(settings.result_cache_entries, settings.result_cache_bytes)


def cached_classification(
    cache: ResultCache | None,
    use: CacheUse,
    classifier: MemeClassifier,
    image: bytes | None,
    text: str | None,
    classify: Callable[[], ClassifyResult],
    observe: Callable[[str], None] | None = None,
) -> tuple[ClassifyResult, bool]:
    """``classify()``'s answer, from the cache when it has it; (result, whether it was a hit).

    ``text``: the text sent (None: the gateway reads it by OCR). ``observe`` is told "hit" (stored,
    or computed meanwhile for an identical request), "miss", or "bypass" (``Cache-Control``).
    """
    if cache is None:
        return classify(), False
    version = classifier.manifest.repository_version
    key = cache_key(image, text, classifier_fingerprint(classifier))
    if not use.read:
        _observe(observe, "bypass")
        fresh = classify()
        if use.write:
            cache.put(key, encode_result(fresh, version))
        return fresh, False
    value = cache.get(key)
    result = decode_result(value, version) if value is not None else None
    if result is not None:
        _observe(observe, "hit")
        return result, True
    flight, leader = cache.flights.join(key)
    if not leader:
        shared = cache.flights.wait(flight)
        result = decode_result(shared, version) if shared is not None else None
        _observe(observe, "hit" if result is not None else "miss")
        return (result, True) if result is not None else (classify(), False)
    _observe(observe, "miss")
    encoded = None
    try:
        fresh = classify()
        encoded = encode_result(fresh, version)
        if use.write:
            cache.put(key, encoded)
        return fresh, False
    finally:
        cache.flights.land(key, flight, encoded)


def _observe(observe: Callable[[str], None] | None, outcome: str) -> None:
    if observe is not None:
        observe(outcome)
