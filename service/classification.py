"""One upload (bytes + optional text) -> the API's response body. Shared by the HTTP route and the
in-process ``classify_file``, so both give the same answers and the same errors."""

from __future__ import annotations

import time
from typing import Callable

from service.errors import ApiError
from service.imaging import decode_image
from service.pipeline import MemeClassifier
from service.schemas import ClassifyResponse, classify_response


def check_text(text: str | None, max_chars: int) -> str | None:
    """The request's text, or None (-> OCR) when absent or blank; ApiError 422 when too long."""
    if text is None or not text.strip():
        return None
    if len(text) > max_chars:
        raise ApiError(
            422, "text_too_long",
            f"field 'text' has {len(text)} characters; at most {max_chars} are allowed",
        )
    return text


def classify_upload(
    classifier: MemeClassifier, data: bytes, text: str | None, *, max_pixels: int, max_text_chars: int,
    cancelled: Callable[[], bool] | None = None,
) -> tuple[ClassifyResponse, dict[str, float]]:
    """Decode, classify and shape the answer. Returns it with the per-stage timings (ms).

    ``cancelled``: see :meth:`MemeClassifier.classify_batch`.
    """
    start = time.perf_counter()
    request_text = check_text(text, max_text_chars)
    image = decode_image(data, max_pixels)
    decode_ms = (time.perf_counter() - start) * 1000.0
    result = classifier.classify(image, request_text, cancelled=cancelled)
    timings = {"decode": decode_ms, **result.timings_ms, "total": (time.perf_counter() - start) * 1000.0}
    result.timings_ms = timings
    response = classify_response(
        result,
        model_version=classifier.manifest.repository_version,
        task_a=classifier.task_a.name,
        task_c=[t.name for t in classifier.task_c],
        notice=classifier.manifest.notice,
    )
    return response, timings
