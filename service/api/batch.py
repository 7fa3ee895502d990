"""``POST /v1/classify/batch``: many memes in one JSON request, each answered on its own.

Every item gets its own status: a broken image or a too-long text fails that item (with the same
error JSON the single endpoint would give), never the batch. Items are classified in chunks (one
model call per chunk); if a chunk fails, its items are retried one by one so only the culprit fails.
On the batch time limit the items done so far are returned and the rest are marked 504.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from service.api.classification import ClassifyOptions, check_text, check_text_only, shape_response
from service.api.schemas import API_VERSION, ClassifyResponse, ErrorDetail
from service.api.wire import Thresholds, decode_base64_image
from service.core.errors import ApiError
from service.inference.backends import BackendUnavailable
from service.inference.classifier import ClassificationCancelled, MemeClassifier
from service.inference.imaging import ImageLimits, decode_image

logger = logging.getLogger("memotion.gateway")

CHUNK_SIZE = 8


class BatchItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, max_length=200, description="Your id for the item (default: its index).")
    image: str | None = Field(default=None, description="The meme image, base64 (or a data: URL).")
    text: str | None = Field(default=None, description="The meme's text; absent or blank: read by OCR from the image.")


class BatchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "id": "meme-1",
                            "image": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC",  # noqa: E501 (an example value)
                            "text": "when the code finally compiles",
                        },
                        {"id": "meme-2", "text": "bhai kya scene hai"},
                    ],
                    "thresholds": {"offensive": 0.3},
                }
            ]
        },
    )

    items: list[BatchItem] = Field(min_length=1, description="The memes; at most MEMOTION_MAX_BATCH_ITEMS.")
    thresholds: Thresholds | None = Field(default=None, description="Task B thresholds for every item.")


class BatchItemResult(BaseModel):
    index: int
    id: str
    status: int = Field(description="HTTP status this item would have had on its own (200 or 4xx/5xx).")
    result: ClassifyResponse | None = None
    error: ErrorDetail | None = None


class BatchResponse(BaseModel):
    api_version: str = API_VERSION
    model_version: str
    request_id: str | None = None
    count: int
    succeeded: int
    failed: int
    items: list[BatchItemResult]
    timings_ms: dict[str, float]


@dataclass
class Prepared:
    """One decoded, checked item: its position, image (None: text-only) and text (None: OCR)."""

    index: int
    image: Image.Image | None
    text: str | None


class OutcomeSink(Protocol):
    def ok(self, index: int, response: ClassifyResponse) -> None: ...

    def fail(self, index: int, status: int, code: str, message: str) -> None: ...


class BatchOutcomes:
    """Per-item outcomes, filled by the worker thread, read by the request (thread-safe)."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids = list(ids)
        self._lock = threading.Lock()
        self._results: dict[int, BatchItemResult] = {}

    def ok(self, index: int, response: ClassifyResponse) -> None:
        with self._lock:
            self._results.setdefault(
                index, BatchItemResult(index=index, id=self.ids[index], status=200, result=response)
            )

    def fail(self, index: int, status: int, code: str, message: str) -> None:
        with self._lock:
            self._results.setdefault(index, self._error(index, status, code, message))

    def finish(self, status: int, code: str, message: str) -> list[BatchItemResult]:
        """All items in order; any still without an outcome gets this error."""
        with self._lock:
            for index in range(len(self.ids)):
                self._results.setdefault(index, self._error(index, status, code, message))
            return [self._results[i] for i in range(len(self.ids))]

    def _error(self, index: int, status: int, code: str, message: str) -> BatchItemResult:
        error = ErrorDetail(code=code, message=message, status=status)
        return BatchItemResult(index=index, id=self.ids[index], status=status, error=error)


def _prepare(
    classifier: MemeClassifier,
    index: int,
    item: BatchItem,
    max_pixels: ImageLimits | int,
    max_text_chars: int,
) -> Prepared:
    text = check_text(item.text, max_text_chars)
    if item.image is None:
        if text is None:
            raise ApiError(422, "missing_field", "the item has neither 'image' nor 'text'")
        check_text_only(classifier)
        return Prepared(index, None, text)
    data = decode_base64_image(item.image, f"items[{index}].image")
    return Prepared(index, decode_image(data, max_pixels), text)


def classify_prepared(
    classifier: MemeClassifier,
    group: list[Prepared],
    options: ClassifyOptions,
    outcomes: OutcomeSink,
    cancelled: Callable[[], bool],
    text_only: bool,
) -> None:
    """Classify ``group`` (all with images, or all text-only) in chunks of :data:`CHUNK_SIZE`; a chunk
    that fails is retried item by item, so one bad item fails alone."""
    members = classifier.text_only_members if text_only else None

    def run(chunk: list[Prepared]) -> None:
        start = time.perf_counter()
        results = classifier.classify_batch(
            [p.image for p in chunk], [p.text for p in chunk], cancelled=cancelled, members=members
        )
        elapsed = (time.perf_counter() - start) * 1000.0
        for prepared, result in zip(chunk, results):
            result.timings_ms = {**result.timings_ms, "total": elapsed}
            outcomes.ok(prepared.index, shape_response(classifier, result, options))

    for begin in range(0, len(group), CHUNK_SIZE):
        chunk = group[begin : begin + CHUNK_SIZE]
        if cancelled():
            raise ClassificationCancelled()
        try:
            run(chunk)
            continue
        except ClassificationCancelled:
            raise
        except Exception as err:
            if len(chunk) == 1:
                record_failure(outcomes, chunk[0].index, err)
                continue
            logger.warning("batch chunk of %d failed (%s); retrying its items one by one", len(chunk), err)
        for prepared in chunk:
            if cancelled():
                raise ClassificationCancelled()
            try:
                run([prepared])
            except ClassificationCancelled:
                raise
            except Exception as err:
                record_failure(outcomes, prepared.index, err)


def record_failure(outcomes: OutcomeSink, index: int, err: Exception) -> None:
    if isinstance(err, ApiError):
        outcomes.fail(index, err.status, err.code, err.message)
    elif isinstance(err, BackendUnavailable):
        outcomes.fail(index, 503, "backend_unavailable", f"{err}; retry shortly")
    else:
        logger.error("batch item %d failed", index, exc_info=err)
        outcomes.fail(
            index,
            500,
            "internal_error",
            "classifying this item failed inside the gateway (a bug); the other items are unaffected",
        )


def run_batch(
    classifier: MemeClassifier,
    items: Sequence[BatchItem],
    outcomes: BatchOutcomes,
    options: ClassifyOptions,
    *,
    max_pixels: ImageLimits | int,
    max_text_chars: int,
    cancelled: Callable[[], bool],
) -> None:
    """Validate and decode every item, then classify the good ones (images first, then text-only)."""
    with_image: list[Prepared] = []
    text_only: list[Prepared] = []
    for index, item in enumerate(items):
        if cancelled():
            raise ClassificationCancelled()
        try:
            prepared = _prepare(classifier, index, item, max_pixels, max_text_chars)
        except ApiError as err:
            outcomes.fail(index, err.status, err.code, err.message)
            continue
        (text_only if prepared.image is None else with_image).append(prepared)
    classify_prepared(classifier, with_image, options, outcomes, cancelled, text_only=False)
    classify_prepared(classifier, text_only, options, outcomes, cancelled, text_only=True)
