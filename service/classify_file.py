"""``classify_file``: classify one image file, through a running gateway or in process
(what ``memotion classify`` calls)."""

from __future__ import annotations

import mimetypes
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.core.errors import ApiError
from service.core.settings import GatewaySettings

if TYPE_CHECKING:
    from service.inference.classifier import MemeClassifier

CLASSIFY_ROUTE = "/v1/classify"

# In-process mode loads the models and OCR once and keeps them for further files with the same
# settings (``memotion classify a.jpg b.jpg ...`` calls classify_file per file).
_cache_lock = threading.Lock()
_cached: tuple[str, MemeClassifier] | None = None


class ClassifyError(RuntimeError):
    """The meme could not be classified; ``status``/``code``/``message`` as in the API's error JSON."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code} ({status}): {message}")
        self.status = status
        self.code = code
        self.message = message


def _endpoint(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith(CLASSIFY_ROUTE) else url + CLASSIFY_ROUTE


def _via_gateway(path: Path, data: bytes, text: str | None, url: str, timeout_s: float) -> dict[str, Any]:
    import httpx

    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    endpoint = _endpoint(url)
    try:
        response = httpx.post(
            endpoint,
            files={"image": (path.name, data, content_type)},
            data={"text": text} if text is not None else None,
            timeout=httpx.Timeout(timeout_s + 10.0, connect=10.0),
        )
    except httpx.HTTPError as err:
        raise ClassifyError(503, "gateway_unreachable", f"cannot reach the gateway at {endpoint}: {err}") from err
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            raise ClassifyError(int(error["status"]), str(error["code"]), str(error["message"]))
        except (ValueError, KeyError, TypeError):
            raise ClassifyError(
                response.status_code,
                "gateway_error",
                f"{endpoint} answered {response.status_code}: {response.text[:500]}",
            ) from None
    result: dict[str, Any] = response.json()
    return result


def _classifier_for(settings: GatewaySettings) -> MemeClassifier:
    global _cached
    from service.inference.classifier import MemeClassifier

    key = settings.model_dump_json()
    with _cache_lock:
        if _cached is not None and _cached[0] == key:
            return _cached[1]
        if _cached is not None:
            _cached[1].close()
            _cached = None
        classifier = MemeClassifier.from_settings(settings)
        _cached = (key, classifier)
        return classifier


def _in_process(data: bytes, text: str | None, settings: GatewaySettings) -> dict[str, Any]:
    from service.api.classification import classify_upload
    from service.inference.imaging import ImageLimits

    classifier = _classifier_for(settings)
    try:
        response, _ = classify_upload(
            classifier,
            data,
            text,
            max_pixels=ImageLimits.from_settings(settings),
            max_text_chars=settings.max_text_chars,
        )
    except ApiError as err:
        raise ClassifyError(err.status, err.code, err.message) from err
    return response.model_dump(mode="json")


def classify_file(
    path: Path,
    *,
    text: str | None = None,
    url: str | None = None,
    settings: GatewaySettings | None = None,
) -> dict[str, Any]:
    """Classify the image at ``path`` and return the API's JSON answer as a dict.

    With ``url`` (the gateway's base URL, e.g. ``http://127.0.0.1:8000``) the file is POSTed to a
    running gateway; without, the models of ``settings.model_repository`` run in this process.
    Raises :class:`ClassifyError` (bad image, gateway error) or
    :class:`~service.core.errors.GatewayStartupError` (unusable repository, in process).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ClassifyError(400, "unreadable_file", f"cannot read {path}: {err.strerror or err}") from err
    settings = settings or GatewaySettings()
    if url:
        return _via_gateway(path, data, text, url, settings.request_timeout_s)
    return _in_process(data, text, settings)
