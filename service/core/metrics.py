"""Prometheus metrics, one registry per app (so several apps in one process do not collide).

Several gateway processes (``MEMOTION_PROCESSES``, uvicorn workers): with ``PROMETHEUS_MULTIPROC_DIR``
set (``service/server.py`` sets it), prometheus-client keeps every process's values in files there
and ``render`` adds them up, so whichever worker answers ``/metrics`` reports the whole node.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_QUEUE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class GatewayMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._declare_request_metrics()
        self._declare_backend_metrics()
        self._declare_budget_metrics()
        if is_multiprocess():
            atexit.unregister(_mark_dead)  # once per process, however many apps
            atexit.register(_mark_dead)

    def _declare_request_metrics(self) -> None:
        """Requests, their time, the time per classification stage, error answers."""
        registry = self.registry
        self.requests = Counter(
            "memotion_requests_total", "HTTP requests answered.", ["route", "method", "status"], registry=registry
        )
        self.request_seconds = Histogram(
            "memotion_request_seconds",
            "Time to answer an HTTP request.",
            ["route"],
            buckets=_REQUEST_BUCKETS,
            registry=registry,
        )
        self.stage_seconds = Histogram(
            "memotion_stage_seconds",
            "Time spent per classification stage.",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=registry,
        )
        self.errors = Counter("memotion_errors_total", "Error answers, by error code.", ["code"], registry=registry)

    def _declare_backend_metrics(self) -> None:
        """Backend readiness, the embedded backend's dynamic batcher, the result cache."""
        registry = self.registry
        self.backend_ready = Gauge(
            "memotion_backend_ready",
            "1 if the inference backend (and, for Triton, every model) is ready.",
            ["backend"],
            registry=registry,
            multiprocess_mode="min",  # several processes: ready only if every one is
        )
        self.batch_size = Histogram(
            "memotion_batch_size",
            "Rows per inference call of the embedded backend's dynamic batcher.",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.batch_queue_seconds = Histogram(
            "memotion_batch_queue_seconds",
            "Time a request waited in the dynamic batcher's queue before its batch ran.",
            ["model"],
            buckets=_QUEUE_BUCKETS,
            registry=registry,
        )
        self.cache_lookups = Counter(
            "memotion_result_cache_lookups_total",
            "Result cache lookups, by result (hit, miss, bypass: Cache-Control no-cache).",
            ["result"],
            registry=registry,
        )

    def _declare_budget_metrics(self) -> None:
        """The decode memory budget, and the shared cache's circuit breaker."""
        registry = self.registry
        self.decode_bytes = Gauge(
            "memotion_decode_memory_bytes",
            "Bytes of decoded pixels held now, against MEMOTION_DECODE_MEMORY_BYTES.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.cache_breaker_open = Gauge(
            "memotion_result_cache_breaker_open",
            "1 while the shared result cache (Redis) is skipped after a failure (circuit breaker open).",
            registry=registry,
            multiprocess_mode="max",
        )
        self.cache_breaker_events = Counter(
            "memotion_result_cache_breaker_total",
            "Circuit breaker of the shared result cache: opened, closed, and calls skipped while open.",
            ["event"],
            registry=registry,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, method=method, status=str(status)).inc()
        self.request_seconds.labels(route=route).observe(seconds)

    def observe_stages(self, timings_ms: dict[str, float]) -> None:
        for stage, ms in timings_ms.items():
            self.stage_seconds.labels(stage=stage).observe(ms / 1000.0)

    def observe_backend(self, backend: str, ready: bool) -> None:
        self.backend_ready.labels(backend=backend).set(1.0 if ready else 0.0)

    def observe_error(self, code: str) -> None:
        self.errors.labels(code=code).inc()

    def observe_batch(self, model: str, size: int, queue_delays_s: Sequence[float]) -> None:
        """The dynamic batcher's observer (service/inference/batching.py)."""
        self.batch_size.labels(model=model).observe(size)
        queue = self.batch_queue_seconds.labels(model=model)
        for seconds in queue_delays_s:
            queue.observe(seconds)

    def observe_cache(self, result: str) -> None:
        self.cache_lookups.labels(result=result).inc()

    def observe_cache_breaker(self, event: str) -> None:
        """The result cache's circuit breaker: "open", "closed" or "skipped"."""
        self.cache_breaker_events.labels(event=event).inc()
        if event in ("open", "closed"):
            self.cache_breaker_open.set(1.0 if event == "open" else 0.0)

    def observe_decode_bytes(self, held: int) -> None:
        self.decode_bytes.set(held)

    def render(self) -> bytes:
        """This app's metrics; every process's together in multiprocess mode."""
        if not is_multiprocess():
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)


def is_multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def _mark_dead() -> None:
    """A stopping worker's live gauges leave the sums (its counters and histograms stay counted)."""
    from prometheus_client import multiprocess

    with contextlib.suppress(OSError):
        multiprocess.mark_process_dead(os.getpid())
