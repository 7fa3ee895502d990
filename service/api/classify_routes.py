"""The classify routes: ``POST /v1/classify`` (multipart form or JSON with a base64 image and/or
text) and ``POST /v1/classify/batch`` (JSON, many memes, a status per item).

Both authenticate (API key), charge the client's rate limit (one token per meme), then hand the
work to :class:`~service.access.admission.Admission` (worker threads, bounded queue, time limit).
"""

import functools
import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

from service.access.admission import Admission
from service.access.gatekeeper import Gatekeeper
from service.access.keys import Client
from service.api.batch import BatchItemResult, BatchOutcomes, BatchRequest, BatchResponse, run_batch
from service.api.classification import ClassifyOptions, check_text, classify_upload
from service.api.decisions import attach_decisions, batch_answers
from service.api.schemas import ClassifyResponse, ErrorResponse
from service.api.wire import Thresholds, UnicodeText, decode_base64_image, parse_thresholds_field
from service.core.errors import REQUEST_ID_SCOPE_KEY, ApiError, validation_message
from service.core.metrics import GatewayMetrics
from service.core.settings import GatewaySettings
from service.inference.backends import BackendUnavailable
from service.inference.classifier import MemeClassifier
from service.inference.imaging import ImageLimits
from service.inference.result_cache import cache_use
from service.inference.thresholds import ThresholdError, resolve_thresholds
from service.text.unicode_gate import INVALID_TEXT

CLASSIFY_ROUTE = "/v1/classify"
BATCH_ROUTE = "/v1/classify/batch"
FORM_HINT = (
    "send multipart/form-data with an 'image' file and optional 'text' and 'thresholds' fields, "
    'or JSON {"image": <base64>, "text": ...}'
)


class ClassifyJsonRequest(BaseModel):
    """``POST /v1/classify`` as JSON: an image (base64), a text, or both."""

    model_config = ConfigDict(extra="forbid")

    image: str | None = Field(default=None, description="The meme image, base64 (or a data:image/...;base64, URL).")
    text: UnicodeText | None = Field(
        default=None,
        description="The meme's text. Without an image: classified by the "
        "text-only models. With an image but no text: read by OCR.",
    )
    thresholds: Thresholds | None = Field(default=None, description='Task B thresholds, e.g. {"offensive": 0.3}.')


_MULTIPART_SCHEMA = {
    "type": "object",
    "required": ["image"],
    "properties": {
        "image": {
            "type": "string",
            "format": "binary",
            "description": "The meme image (JPEG, PNG, GIF, WebP, BMP or TIFF).",
        },
        "text": {
            "type": "string",
            "description": "The meme's text; if absent or blank it is read from the image by OCR.",
        },
        "thresholds": {"type": "string", "description": 'Task B thresholds as a JSON object, e.g. {"offensive": 0.3}.'},
    },
}
_JSON_EXAMPLES = {
    "image_and_text": {
        "summary": "image (base64) and its text",
        "value": {
            "image": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC",
            "text": "when the code finally compiles",
        },
    },
    "text_only": {"summary": "text only (text-only models vote)", "value": {"text": "bhai kya scene hai"}},
    "thresholds": {
        "summary": "flag offensive from P >= 0.3",
        "value": {
            "image": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC",  # noqa: E501 (an example value)
            "thresholds": {"offensive": 0.3},
        },
    },
}
_CLASSIFY_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": _MULTIPART_SCHEMA},
            "application/json": {"schema": ClassifyJsonRequest.model_json_schema(), "examples": _JSON_EXAMPLES},
        },
    }
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse} for status in statuses}


# Dependencies: what create_app put on app.state (service/api/app.py).
def _settings(request: Request) -> GatewaySettings:
    return request.app.state.settings


def _metrics(request: Request) -> GatewayMetrics:
    return request.app.state.metrics


def _admission(request: Request) -> Admission:
    return request.app.state.admission


def _gatekeeper(request: Request) -> Gatekeeper:
    return request.app.state.gatekeeper


SettingsDep = Annotated[GatewaySettings, Depends(_settings)]
MetricsDep = Annotated[GatewayMetrics, Depends(_metrics)]
AdmissionDep = Annotated[Admission, Depends(_admission)]
GatekeeperDep = Annotated[Gatekeeper, Depends(_gatekeeper)]

_bearer = HTTPBearer(
    auto_error=False, description="An API key: 'Authorization: Bearer <key>' (when keys are configured)."
)


def authenticate(
    request: Request,
    gatekeeper: GatekeeperDep,
    _: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
) -> Client:
    return gatekeeper.authenticate(request)


ClientDep = Annotated[Client, Depends(authenticate)]


def current_classifier(request: Request) -> MemeClassifier:
    classifier: MemeClassifier | None = request.app.state.classifier
    if classifier is None:
        raise ApiError(
            503, "not_ready", "the models are not loaded (the gateway is starting or stopping); retry shortly"
        )
    return classifier


def _options(
    request: Request, settings: GatewaySettings, classifier: MemeClassifier, thresholds: Any, explain: bool
) -> ClassifyOptions:
    try:
        resolved = resolve_thresholds(thresholds, settings.task_thresholds, classifier.manifest.task_b_names)
    except ThresholdError as err:
        raise ApiError(422, "invalid_thresholds", str(err)) from err
    return ClassifyOptions(
        resolved,
        explain,
        request.scope.get(REQUEST_ID_SCOPE_KEY),
        cache=getattr(request.app.state, "result_cache", None),
        cache_use=cache_use(request.headers.get("cache-control")),
        observe_cache=request.app.state.metrics.observe_cache,
        decode_budget=getattr(request.app.state, "decode_budget", None),
    )


def _backend_down(err: BackendUnavailable) -> ApiError:
    return ApiError(503, "backend_unavailable", f"{err}; retry shortly", headers={"Retry-After": "1"})


def _check_form_charset(request: Request) -> None:
    """Form fields are UTF-8: a ``charset`` parameter naming anything else is refused (415), since
    Starlette would decode the fields under it (UTF-7 turns ``+2AA-`` into a lone surrogate)."""
    for parameter in request.headers.get("content-type", "").split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise ApiError(
                415,
                "unsupported_charset",
                f"form fields are read as UTF-8 only; the request declares charset={value.strip()[:40]!r} "
                "(send UTF-8 and leave the charset parameter out, or set it to utf-8)",
            )


async def _read_form(request: Request, max_text_chars: int) -> tuple[bytes, str | None, Any]:
    _check_form_charset(request)
    form = await request.form(max_files=2, max_fields=8)
    try:
        for name in ("image", "text", "thresholds"):
            if len(form.getlist(name)) > 1:
                raise ApiError(422, "duplicate_field", f"field '{name}' was sent more than once; send it once")
        image = form.get("image")
        if image is None:
            raise ApiError(422, "missing_field", f"field 'image' is required ({FORM_HINT})")
        if not isinstance(image, UploadFile):
            raise ApiError(
                422, "invalid_request", f"field 'image' must be a file upload, not a plain form value ({FORM_HINT})"
            )
        text = form.get("text")
        if text is not None and not isinstance(text, str):
            raise ApiError(422, "invalid_request", "field 'text' must be a plain form value, not a file")
        check_text(text, max_text_chars)  # before reading the image
        return await image.read(), text, form.get("thresholds")
    finally:
        await form.close()


async def _read_json(request: Request, max_text_chars: int) -> tuple[bytes | None, str | None, Any]:
    raw = await request.body()
    try:
        body = ClassifyJsonRequest.model_validate_json(raw)
    except ValidationError as err:
        errors = _text_errors(raw) or err.errors(include_url=False)
        code, message = validation_message(errors, hint=f" ({FORM_HINT})")
        if errors and all(tuple(e.get("loc", ()))[:1] == ("thresholds",) for e in errors):
            code = "invalid_thresholds"  # the code a form's malformed thresholds get too
        raise ApiError(422, code, message) from err
    check_text(body.text, max_text_chars)
    if body.image is None:
        if body.text is None or not body.text.strip():
            raise ApiError(422, "missing_field", f"send 'image' (base64), 'text', or both ({FORM_HINT})")
        return None, body.text, body.thresholds
    return decode_base64_image(body.image), body.text, body.thresholds


def _text_errors(raw: bytes) -> list[Any]:
    """The field-named ``invalid_text`` errors of a body whose JSON holds a lone surrogate escape
    (which pydantic's parser refuses without naming the field; Python's parses it); else none."""
    try:
        ClassifyJsonRequest.model_validate(json.loads(raw))
    except ValidationError as err:
        return [e for e in err.errors(include_url=False) if e.get("type") == INVALID_TEXT]
    except (ValueError, RecursionError):
        return []
    return []


async def _read_upload(request: Request, max_text_chars: int) -> tuple[bytes | None, str | None, Any]:
    """The image bytes, text and raw thresholds of a classify request, by its Content-Type."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        data, text, raw_thresholds = await _read_form(request, max_text_chars)
        return data, text, parse_thresholds_field(raw_thresholds)
    if content_type == "application/json" or content_type.endswith("+json"):
        return await _read_json(request, max_text_chars)
    raise ApiError(
        415, "unsupported_media_type", f"Content-Type {content_type or '(none)'} is not accepted; {FORM_HINT}"
    )


async def classify(
    request: Request,
    response: Response,
    client: ClientDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    admission: AdmissionDep,
    gatekeeper: GatekeeperDep,
    explain: Annotated[bool, Query(description="Add the text path (each step and its text) to the answer.")] = False,
) -> ClassifyResponse:
    """``POST /v1/classify``: one meme, classified in a worker thread under the request time limit."""
    classifier = current_classifier(request)
    data, text, thresholds = await _read_upload(request, settings.max_text_chars)
    options = _options(request, settings, classifier, thresholds, explain)
    gatekeeper.charge(client, 1)  # only a well-formed request costs a token
    work = functools.partial(
        classify_upload,
        classifier,
        data,
        text,
        max_pixels=ImageLimits.from_settings(settings),
        max_text_chars=settings.max_text_chars,
        options=options,
    )
    try:
        result, timings = await admission.run(
            lambda cancelled: work(cancelled=cancelled),
            timeout_s=settings.request_timeout_s,
            timeout_message=f"classifying this meme took longer than the {settings.request_timeout_s:g} s "
            "allowed; retry later, or send the text to skip OCR",
        )
    except BackendUnavailable as err:
        raise _backend_down(err) from err
    metrics.observe_stages(timings)
    await attach_decisions(request, client, classifier, [(result, data)])
    response.headers["X-Model-Version"] = result.model_version
    return result


def _check_batch_size(count: int, max_items: int) -> None:
    if count > max_items:
        raise ApiError(
            413, "too_many_items", f"the batch has {count} items; at most {max_items} are allowed per request"
        )


async def _run_batch_items(
    admission: Admission,
    settings: GatewaySettings,
    classifier: MemeClassifier,
    body: BatchRequest,
    options: ClassifyOptions,
) -> list[BatchItemResult]:
    """Every item's outcome; those the batch time limit cut off are 504 (a 503 overload fails the batch)."""
    outcomes = BatchOutcomes([item.id if item.id is not None else str(i) for i, item in enumerate(body.items)])
    timeout_message = (
        f"the batch did not reach this item within its {settings.batch_timeout_s:g} s limit; send it again"
    )
    try:
        await admission.run(
            lambda cancelled: run_batch(
                classifier,
                body.items,
                outcomes,
                options,
                max_pixels=ImageLimits.from_settings(settings),
                max_text_chars=settings.max_text_chars,
                cancelled=cancelled,
                max_request_pixels=settings.max_request_pixels,
            ),
            timeout_s=settings.batch_timeout_s,
            timeout_message=timeout_message,
        )
    except ApiError as err:
        if err.status != 504:
            raise  # 503 overloaded: nothing was done, the client sends the batch again
    return outcomes.finish(504, "timeout", timeout_message)


async def classify_batch(
    request: Request,
    response: Response,
    body: BatchRequest,
    client: ClientDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    admission: AdmissionDep,
    gatekeeper: GatekeeperDep,
    explain: Annotated[bool, Query(description="Add the text path to every item's answer.")] = False,
) -> BatchResponse:
    """``POST /v1/classify/batch``: many memes, a status per item, under the batch time limit."""
    classifier = current_classifier(request)
    count = len(body.items)
    _check_batch_size(count, settings.max_batch_items)
    options = _options(request, settings, classifier, body.thresholds, explain)
    gatekeeper.charge(client, count)  # only a well-formed batch costs tokens
    start = time.perf_counter()
    items = await _run_batch_items(admission, settings, classifier, body, options)
    await attach_decisions(request, client, classifier, batch_answers(body, items))
    succeeded = sum(1 for item in items if item.status == 200)
    response.headers["X-Model-Version"] = classifier.manifest.repository_version
    for item in items:
        if item.result is not None:
            metrics.observe_stages(item.result.timings_ms)
    return BatchResponse(
        model_version=classifier.manifest.repository_version,
        request_id=options.request_id,
        count=count,
        succeeded=succeeded,
        failed=count - succeeded,
        items=items,
        timings_ms={"total": (time.perf_counter() - start) * 1000.0},
    )


def classify_router(settings: GatewaySettings) -> APIRouter:
    """The two classify routes; their dependencies come from ``app.state`` (settings, metrics,
    admission, gatekeeper), ``settings`` here only fills in the batch route's documented limit."""
    router = APIRouter()
    router.add_api_route(
        CLASSIFY_ROUTE,
        classify,
        methods=["POST"],
        response_model=ClassifyResponse,
        response_model_exclude_none=True,
        summary="Classify one meme",
        description="Multipart form (`image` file, optional `text`, optional `thresholds` JSON) or JSON "
        "(`image` base64 and/or `text`, optional `thresholds`). Without text the gateway reads it by OCR; "
        "without an image only the text-only models vote. `?explain=true` adds the text path step by step.",
        responses=_errors(400, 401, 413, 415, 422, 429, 500, 503, 504),
        openapi_extra=_CLASSIFY_BODY_DOC,
    )
    router.add_api_route(
        BATCH_ROUTE,
        classify_batch,
        methods=["POST"],
        response_model=BatchResponse,
        response_model_exclude_none=True,
        summary="Classify many memes; a status per item",
        description=f'JSON `{{"items": [{{"id", "image" (base64), "text"}}, ...]}}`, at most '
        f"{settings.max_batch_items} items. The answer is 200 whenever the batch itself is well formed: each "
        "item carries its own `status` and either `result` (the single endpoint's answer) or `error`. Items "
        "not finished within the batch time limit come back as 504, the finished ones are kept.",
        responses=_errors(401, 413, 422, 429, 503),
    )
    return router
