"""One meme (image bytes and/or text) -> the API's response body. Shared by the HTTP routes (single
and batch) and the in-process ``classify_file``, so all give the same answers and the same errors."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from service.api.schemas import ClassifyResponse, classify_response
from service.core.errors import ApiError
from service.inference.classifier import ClassifyResult, MemeClassifier
from service.inference.decode_budget import DecodeBudget
from service.inference.imaging import ImageLimits, open_image
from service.inference.result_cache import CacheUse, ResultCache, cached_classification
from service.text.unicode_gate import require_unicode


@dataclass(frozen=True)
class ClassifyOptions:
    """Per-request choices: resolved Task B thresholds, ``?explain=true``, the request id."""

    thresholds: Mapping[str, float] = field(default_factory=dict)
    explain: bool = False
    request_id: str | None = None
    # The result cache (service/inference/result_cache.py): None = off; Cache-Control opt-out.
    cache: ResultCache | None = None
    cache_use: CacheUse = field(default_factory=CacheUse)
    observe_cache: Callable[[str], None] | None = None
    # The process-wide memory budget for decoded pixels (service/inference/decode_budget.py); None: none.
    decode_budget: DecodeBudget | None = None


def check_text(text: str | None, max_chars: int, field: str = "text") -> str | None:
    """The text gate of every entry: the request's text, or None (-> OCR) when absent or blank;
    ApiError 422 naming ``field`` when it is not valid Unicode or too long."""
    if text is None:
        return None
    require_unicode(text, field)
    if not text.strip():
        return None
    if len(text) > max_chars:
        raise ApiError(
            422,
            "text_too_long",
            f"field '{field}' has {len(text)} characters; at most {max_chars} are allowed",
        )
    return text


def check_text_only(classifier: MemeClassifier) -> None:
    """A request without an image needs a member that reads only text."""
    if not classifier.text_only_members:
        raise ApiError(
            422,
            "image_required",
            "this model repository has no text-only model (every ensemble member reads the image); "
            "send an image as well",
        )


def shape_response(
    classifier: MemeClassifier,
    result: ClassifyResult,
    options: ClassifyOptions,
) -> ClassifyResponse:
    explain: dict[str, Any] | None = None
    if options.explain:
        processor = classifier.text_processor
        explain = {"text_config": processor.describe() if processor is not None else {}, "members": list(result.votes)}
    return classify_response(
        result,
        model_version=classifier.manifest.repository_version,
        task_a=classifier.task_a.name,
        task_c=[t.name for t in classifier.task_c],
        notice=classifier.manifest.notice,
        task_b_names=classifier.manifest.task_b_names,
        thresholds=options.thresholds,
        request_id=options.request_id,
        explain=explain,
    )


def _holding(budget: DecodeBudget | None, nbytes: int, cancelled: Callable[[], bool] | None) -> Any:
    """``budget.hold(nbytes)``, or nothing to hold without a budget."""
    return budget.hold(nbytes, cancelled) if budget is not None else nullcontext()


def classify_upload(
    classifier: MemeClassifier,
    data: bytes | None,
    text: str | None,
    *,
    max_pixels: ImageLimits | int,  # the limits; a bare int: the pixel budget, default shape limits
    max_text_chars: int,
    cancelled: Callable[[], bool] | None = None,
    options: ClassifyOptions | None = None,
) -> tuple[ClassifyResponse, dict[str, float]]:
    """Decode, classify and shape the answer. Returns it with the per-stage timings (ms).

    ``data`` None: a text-only request (the members that read only text vote). ``cancelled``: see
    :meth:`MemeClassifier.classify_batch`.
    """
    options = options or ClassifyOptions()
    start = time.perf_counter()
    request_text = check_text(text, max_text_chars)
    if data is None:
        if request_text is None:
            raise ApiError(422, "missing_field", "send an 'image', a 'text', or both")
        check_text_only(classifier)

    def classify() -> ClassifyResult:
        if data is None:
            result = classifier.classify_batch(
                [None], [request_text], cancelled=cancelled, members=classifier.text_only_members
            )[0]
            result.timings_ms = {**result.timings_ms, "total": (time.perf_counter() - start) * 1000.0}
            return result
        opened = open_image(data, max_pixels)  # every limit from the header, before any pixel
        with _holding(options.decode_budget, opened.decoded_bytes, cancelled):
            image = opened.decode()
            decode_ms = (time.perf_counter() - start) * 1000.0
            result = classifier.classify(image, request_text, cancelled=cancelled)
            del image
        result.timings_ms = {"decode": decode_ms, **result.timings_ms, "total": (time.perf_counter() - start) * 1000.0}
        return result

    # Thresholds and shaping come after the cache: they stay per request.
    result, hit = cached_classification(
        options.cache, options.cache_use, classifier, data, request_text, classify, options.observe_cache
    )
    if hit:
        elapsed = (time.perf_counter() - start) * 1000.0
        result.timings_ms = {"cache": elapsed, "total": elapsed}
    return shape_response(classifier, result, options), result.timings_ms
