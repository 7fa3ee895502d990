"""Memory budgets for decoded pixels, so a small upload cannot make the gateway grow.

A 4.5 KB PNG can declare 6000 x 6000 pixels; 32 of them in one batch were 4.5 GB once decoded. Two
budgets, both decided from image headers before any pixel is decoded (service/inference/imaging.py,
:class:`~service.inference.imaging.OpenedImage`):

* :class:`RequestBudget` -- the pixels one request may have decoded, every image of a batch (or a
  scoring job's chunk) together (``MEMOTION_MAX_REQUEST_PIXELS``). An image that would go past it is
  refused with 413 ``request_too_large`` (in a batch: that item alone, the others keep their answers).
* :class:`DecodeBudget` -- the bytes of decoded pixels the whole process holds at once
  (``MEMOTION_DECODE_MEMORY_BYTES``). Decoding waits for its share (``MEMOTION_DECODE_WAIT_S``), then
  gives up with 503 ``decode_busy`` and ``Retry-After``: the gateway queues or refuses, it does not grow.
  A share is held while the decoded image is in use (decoded, classified, dropped) and given back
  after; once nothing is decoding after a large share, the freed memory is handed back to the system.
"""

from __future__ import annotations

import ctypes
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from service.core.errors import ApiError

MIB = 1024 * 1024
_POLL_S = 0.1  # how often a waiting decode looks at whether its request was abandoned
TRIM_BYTES = 64 * MIB  # after a hold this large, with nothing decoding, freed memory is handed back


def release_free_memory() -> None:
    """Hand freed heap memory back to the system: glibc keeps what large decodes freed (in each
    worker thread's arena) as resident memory otherwise. A no-op where there is no glibc."""
    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _mib(count: int) -> str:
    return f"{count / MIB:.0f} MiB"


class RequestBudget:
    """Pixels one request may decode, all its images together (not thread-safe: one per request)."""

    def __init__(self, max_pixels: int) -> None:
        if max_pixels <= 0:
            raise ValueError("max_pixels must be positive")
        self.max_pixels = max_pixels
        self.used = 0

    def charge(self, pixels: int, what: str = "this image") -> None:
        """Count ``pixels`` against the budget; 413 (nothing counted) when they do not fit."""
        if self.used + pixels > self.max_pixels:
            raise ApiError(
                413,
                "request_too_large",
                f"{what} has {pixels} pixels and this request's images already have {self.used}; one "
                f"request may decode at most {self.max_pixels} pixels in all, send the rest in another request",
            )
        self.used += pixels


class DecodeBudget:
    """Bytes of decoded pixels held at once in this process; waits, then 503, when they are out."""

    def __init__(self, capacity_bytes: int, wait_s: float, observe: Callable[[int], None] | None = None) -> None:
        if capacity_bytes <= 0 or wait_s < 0:
            raise ValueError("capacity_bytes must be positive and wait_s not negative")
        self.capacity_bytes = capacity_bytes
        self.wait_s = wait_s
        self.observe = observe  # told the bytes held after each change (a gauge)
        self._held = 0
        self._cond = threading.Condition()

    @property
    def held(self) -> int:
        return self._held

    @contextmanager
    def hold(self, nbytes: int, cancelled: Callable[[], bool] | None = None) -> Iterator[None]:
        """Hold ``nbytes`` of the budget for the ``with`` block; 413 if they can never fit, 503 when
        they did not free up within ``wait_s`` (or the request was abandoned meanwhile)."""
        nbytes = max(0, int(nbytes))
        if nbytes > self.capacity_bytes:
            raise ApiError(
                413,
                "image_too_large",
                f"decoding this image would take about {_mib(nbytes)}; the gateway decodes at most "
                f"{_mib(self.capacity_bytes)} at once, send a smaller image",
            )
        self._acquire(nbytes, cancelled)
        try:
            yield
        finally:
            with self._cond:
                self._held -= nbytes
                idle = self._held == 0
                self._cond.notify_all()
                self._report()
            if idle and nbytes >= TRIM_BYTES:
                release_free_memory()

    def _acquire(self, nbytes: int, cancelled: Callable[[], bool] | None) -> None:
        deadline = time.monotonic() + self.wait_s
        with self._cond:
            while self._held + nbytes > self.capacity_bytes:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (cancelled is not None and cancelled()):
                    raise self._busy()
                self._cond.wait(min(remaining, _POLL_S))
            self._held += nbytes
            self._report()

    def _busy(self) -> ApiError:
        return ApiError(
            503,
            "decode_busy",
            f"the gateway is decoding as many images as its memory budget allows ({_mib(self.capacity_bytes)}); "
            "retry shortly",
            headers={"Retry-After": str(max(1, math.ceil(self.wait_s)))},
        )

    def _report(self) -> None:
        if self.observe is not None:
            self.observe(self._held)
