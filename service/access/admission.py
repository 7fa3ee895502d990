"""Admission control: at most ``workers`` classifications run at once (in worker threads, off the
event loop), at most ``max_queue`` more wait; beyond that the gateway answers 503 at once instead of
piling work up in memory. Waiting counts against the request's time limit (504 after it).

A request that timed out keeps its place until its thread has really stopped (the thread checks
``cancelled`` between stages), so abandoned work cannot push the number of threads past the bound.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import anyio
from prometheus_client import CollectorRegistry, Gauge

from service.core.errors import ApiError
from service.inference.classifier import ClassificationCancelled

T = TypeVar("T")

Work = Callable[[Callable[[], bool]], T]  # work(cancelled) -> result


class Admission:
    def __init__(self, workers: int, max_queue: int, registry: CollectorRegistry | None = None) -> None:
        if workers < 1 or max_queue < 0:
            raise ValueError("workers must be >= 1 and max_queue >= 0")
        self.workers = workers
        self.max_queue = max_queue
        self.capacity = workers + max_queue
        self._lock = threading.Lock()
        self._admitted = 0  # accepted and not finished: running + waiting (+ timed out, still stopping)
        self._running = 0
        self._slots = threading.BoundedSemaphore(workers)
        self._threads = anyio.CapacityLimiter(self.capacity)
        self._admitted_gauge = self._running_gauge = None
        if registry is not None:
            self._admitted_gauge = Gauge(
                "memotion_admitted_requests",
                "Classification requests accepted and not finished (running or queued).",
                registry=registry,
            )
            self._running_gauge = Gauge(
                "memotion_running_requests", "Classification requests running now.", registry=registry
            )
            self._capacity_gauge = Gauge("memotion_admission_capacity", "workers + max_queue.", registry=registry)
            self._capacity_gauge.set(self.capacity)

    @property
    def admitted(self) -> int:
        return self._admitted

    @property
    def running(self) -> int:
        return self._running

    def _set_gauges(self) -> None:
        if self._admitted_gauge is not None and self._running_gauge is not None:
            self._admitted_gauge.set(self._admitted)
            self._running_gauge.set(self._running)

    def _release(self) -> None:
        with self._lock:
            self._admitted -= 1
            self._set_gauges()

    async def run(self, work: Work[T], *, timeout_s: float, timeout_message: str) -> T:
        """Run ``work(cancelled)`` in a worker thread once a slot is free; 503 if the queue is full,
        504 (``timeout_message``) after ``timeout_s``."""
        with self._lock:
            if self._admitted >= self.capacity:
                raise ApiError(
                    503,
                    "overloaded",
                    f"the gateway is at capacity ({self.workers} classifying, {self.max_queue} waiting); retry shortly",
                    headers={"Retry-After": "1"},
                )
            self._admitted += 1
            self._set_gauges()
        gave_up = threading.Event()
        state = ["pending"]  # -> started | abandoned (never started)

        def job() -> T:
            with self._lock:
                if state[0] == "abandoned":
                    raise ClassificationCancelled()
                state[0] = "started"
            try:
                with self._slots:  # the queue: wait for one of the worker slots
                    if gave_up.is_set():
                        raise ClassificationCancelled()
                    with self._lock:
                        self._running += 1
                        self._set_gauges()
                    try:
                        return work(gave_up.is_set)
                    finally:
                        with self._lock:
                            self._running -= 1
                            self._set_gauges()
            finally:
                self._release()

        try:
            with anyio.fail_after(timeout_s):
                return await anyio.to_thread.run_sync(job, abandon_on_cancel=True, limiter=self._threads)
        except TimeoutError as err:
            self._give_up(gave_up, state)
            raise ApiError(504, "timeout", timeout_message) from err
        except BaseException:
            self._give_up(gave_up, state)  # the client went away, or the server is cancelling
            raise

    def _give_up(self, gave_up: threading.Event, state: list[str]) -> None:
        gave_up.set()
        with self._lock:
            if state[0] == "pending":  # the thread never began: its place is freed here
                state[0] = "abandoned"
                self._admitted -= 1
                self._set_gauges()
