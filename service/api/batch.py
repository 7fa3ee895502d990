"""``POST /v1/classify/batch``: many memes in one JSON request, each answered on its own.

Every item gets its own status: a broken image or a text that is too long or not valid Unicode
fails that item (with the same error JSON the single endpoint would give), never the batch. Every
image's header is read first and charged to the request's pixel budget (an image beyond it fails
alone, 413); pixels are decoded only chunk by chunk as they are classified, each chunk holding its
share of the process's decode memory budget (service/inference/decode_budget.py) until its answers
are in. Items are classified in chunks (one model call per chunk); if a chunk fails, its items are
retried one by one so only the culprit fails. On the batch time limit the items done so far are
returned and the rest are marked 504.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from service.api.classification import ClassifyOptions, check_text, check_text_only, shape_response
from service.api.schemas import API_VERSION, ClassifyResponse, ErrorDetail
from service.api.wire import Thresholds, UnicodeText, decode_base64_image
from service.core.errors import ApiError
from service.inference.backends import BackendUnavailable
from service.inference.classifier import ClassificationCancelled, MemeClassifier
from service.inference.decode_budget import DecodeBudget, RequestBudget
from service.inference.imaging import ImageLimits, OpenedImage, as_limits, open_image

logger = logging.getLogger("memotion.gateway")

CHUNK_SIZE = 8


class BatchItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: UnicodeText | None = Field(
        default=None, max_length=200, description="Your id for the item (default: its index)."
    )
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
    """One checked item: its position, image (header read and within every limit, pixels decoded
    only when its chunk is classified; None: text-only) and text (None: OCR)."""

    index: int
    image: OpenedImage | None
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


def prepare_item(
    classifier: MemeClassifier,
    index: int,
    image: bytes | None,
    text: str | None,
    limits: ImageLimits | int,
    budget: RequestBudget,
) -> Prepared:
    """One item (image bytes and/or text, already through the text gate) checked from its header and
    charged to the request's pixel budget; ApiError (4xx) for this item alone."""
    if image is None:
        if text is None:
            raise ApiError(422, "missing_field", "the item has neither 'image' nor 'text'")
        check_text_only(classifier)
        return Prepared(index, None, text)
    opened = open_image(image, limits)
    budget.charge(opened.pixels, f"item {index}'s image")
    return Prepared(index, opened, text)


def _prepare(
    classifier: MemeClassifier,
    index: int,
    item: BatchItem,
    limits: ImageLimits | int,
    max_text_chars: int,
    budget: RequestBudget,
) -> Prepared:
    text = check_text(item.text, max_text_chars, f"items[{index}].text")
    data = decode_base64_image(item.image, f"items[{index}].image") if item.image is not None else None
    return prepare_item(classifier, index, data, text, limits, budget)


def classify_prepared(
    classifier: MemeClassifier,
    group: list[Prepared],
    options: ClassifyOptions,
    outcomes: OutcomeSink,
    cancelled: Callable[[], bool],
    text_only: bool,
) -> None:
    """Classify ``group`` (all with images, or all text-only) in chunks of at most :data:`CHUNK_SIZE`
    items whose decoded pixels fit the decode budget; each chunk is decoded only when its turn comes
    (holding its share of the budget until its answers are in). A chunk that fails is retried item
    by item, so one bad item fails alone."""
    members = classifier.text_only_members if text_only else None

    def run(chunk: list[tuple[Prepared, Image.Image | None]]) -> None:
        start = time.perf_counter()
        results = classifier.classify_batch(
            [image for _, image in chunk], [p.text for p, _ in chunk], cancelled=cancelled, members=members
        )
        elapsed = (time.perf_counter() - start) * 1000.0
        for (prepared, _), result in zip(chunk, results):
            result.timings_ms = {**result.timings_ms, "total": elapsed}
            outcomes.ok(prepared.index, shape_response(classifier, result, options))

    for chunk in _chunks(group, options.decode_budget):
        if cancelled():
            raise ClassificationCancelled()
        try:
            with _holding(options.decode_budget, chunk, cancelled):
                _classify_chunk(_decoded(chunk, outcomes), run, outcomes, cancelled)
        except ApiError as err:  # the decode budget stayed out of reach: the chunk's items are 503
            for prepared in chunk:
                outcomes.fail(prepared.index, err.status, err.code, err.message)


def _chunks(group: list[Prepared], budget: DecodeBudget | None) -> list[list[Prepared]]:
    """``group`` cut in order into chunks of at most CHUNK_SIZE items and the budget's capacity."""
    capacity = budget.capacity_bytes if budget is not None else None
    chunks: list[list[Prepared]] = []
    held = 0
    for prepared in group:
        size = _decoded_bytes(prepared)
        if not chunks or len(chunks[-1]) >= CHUNK_SIZE or (capacity is not None and held + size > capacity):
            chunks.append([])
            held = 0
        chunks[-1].append(prepared)
        held += size
    return chunks


def _decoded_bytes(prepared: Prepared) -> int:
    return prepared.image.decoded_bytes if prepared.image is not None else 0


def _holding(budget: DecodeBudget | None, chunk: list[Prepared], cancelled: Callable[[], bool]) -> Any:
    """The chunk's share of the decode budget, all at once (never holding a part while waiting)."""
    if budget is None:
        return nullcontext()
    return budget.hold(sum(_decoded_bytes(p) for p in chunk), cancelled)


def _decoded(chunk: list[Prepared], outcomes: OutcomeSink) -> list[tuple[Prepared, Image.Image | None]]:
    """The chunk's items with their pixels decoded; an image that fails to decode fails alone."""
    decoded: list[tuple[Prepared, Image.Image | None]] = []
    for prepared in chunk:
        try:
            decoded.append((prepared, prepared.image.decode() if prepared.image is not None else None))
        except ApiError as err:
            outcomes.fail(prepared.index, err.status, err.code, err.message)
    return decoded


def _classify_chunk(
    chunk: list[tuple[Prepared, Image.Image | None]],
    run: Callable[[list[tuple[Prepared, Image.Image | None]]], None],
    outcomes: OutcomeSink,
    cancelled: Callable[[], bool],
) -> None:
    """``run(chunk)``; if it fails, each item again on its own so only the culprit fails."""
    if not chunk:
        return
    try:
        run(chunk)
        return
    except ClassificationCancelled:
        raise
    except Exception as err:
        if len(chunk) == 1:
            record_failure(outcomes, chunk[0][0].index, err)
            return
        logger.warning("batch chunk of %d failed (%s); retrying its items one by one", len(chunk), err)
    for item in chunk:
        if cancelled():
            raise ClassificationCancelled()
        try:
            run([item])
        except ClassificationCancelled:
            raise
        except Exception as err:
            record_failure(outcomes, item[0].index, err)


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
    max_request_pixels: int | None = None,
) -> None:
    """Check every item and read every image's header (charging the request's pixel budget,
    ``max_request_pixels``; default: no more than ``max_pixels`` per item), then classify the good
    ones (images first, then text-only), decoding the images chunk by chunk."""
    budget = RequestBudget(max_request_pixels or len(items) * as_limits(max_pixels).max_pixels)
    with_image: list[Prepared] = []
    text_only: list[Prepared] = []
    for index, item in enumerate(items):
        if cancelled():
            raise ClassificationCancelled()
        try:
            prepared = _prepare(classifier, index, item, max_pixels, max_text_chars, budget)
        except ApiError as err:
            outcomes.fail(index, err.status, err.code, err.message)
            continue
        (text_only if prepared.image is None else with_image).append(prepared)
    classify_prepared(classifier, with_image, options, outcomes, cancelled, text_only=False)
    classify_prepared(classifier, text_only, options, outcomes, cancelled, text_only=True)
