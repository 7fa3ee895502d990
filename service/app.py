"""The HTTP gateway: ``create_app(settings)`` builds the FastAPI application.

Routes: ``POST /v1/classify``, ``GET /healthz``, ``GET /readyz``, ``GET /metrics``.
"""

import logging
import threading
from contextlib import asynccontextmanager
from typing import Annotated, Any, AsyncIterator

import anyio
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import Response

from service.body_limit import BodyLimitMiddleware
from service.classification import check_text, classify_upload
from service.errors import ApiError, GatewayStartupError, install_error_handlers
from service.logging_config import configure_logging
from service.metrics import GatewayMetrics
from service.pipeline import MemeClassifier
from service.request_context import RequestContextMiddleware
from service.schemas import ClassifyResponse, ErrorResponse, HealthResponse, ReadyResponse
from service.settings import GatewaySettings

logger = logging.getLogger("memotion.gateway")

API_VERSION = "1"


def _error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse} for status in statuses}


def _classifier(request: Request) -> MemeClassifier:
    classifier: MemeClassifier | None = request.app.state.classifier
    if classifier is None:
        raise ApiError(503, "not_ready", "the models are not loaded (the gateway is starting or stopping); retry shortly")
    return classifier


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    metrics = GatewayMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logger.info("loading model repository %s (backend %s, ocr %s)",
                    settings.model_repository, settings.backend, settings.ocr)
        try:
            classifier = await anyio.to_thread.run_sync(MemeClassifier.from_settings, settings)
        except GatewayStartupError as err:
            logger.error("memotion gateway cannot start: %s", err)
            raise
        try:
            await anyio.to_thread.run_sync(classifier.warm_up)
        except Exception as err:
            classifier.close()
            logger.error("memotion gateway cannot start: a first classification failed: %s", err)
            raise GatewayStartupError(f"a first classification of a test image failed: {err}") from err
        app.state.classifier = classifier
        logger.info("ready: repository %s version %s, members %s",
                    settings.model_repository, classifier.manifest.repository_version,
                    [m.name for m in classifier.members])
        try:
            yield
        finally:
            app.state.classifier = None
            classifier.close()

    app = FastAPI(
        title="memotion gateway",
        version=API_VERSION,
        description=(
            "Memotion 3 meme classification: Task A sentiment, Task B emotions, Task C intensities. "
            "Labels come from the served model repository's manifest."
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.classifier = None
    install_error_handlers(app)
    # Added last = outermost: RequestContext (id, log, metrics) wraps the body limit.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)

    @app.post(
        "/v1/classify",
        response_model=ClassifyResponse,
        summary="Classify one meme",
        responses=_error_responses(400, 413, 415, 422, 500, 503, 504),
    )
    async def classify(
        request: Request,
        image: Annotated[UploadFile, File(description="The meme image (JPEG, PNG, GIF, WebP, BMP or TIFF).")],
        text: Annotated[
            str | None,
            Form(description=f"The meme's text; if absent or blank it is read from the image by OCR. "
                             f"At most {settings.max_text_chars} characters."),
        ] = None,
    ) -> ClassifyResponse:
        classifier = _classifier(request)
        check_text(text, settings.max_text_chars)  # before any decoding work
        data = await image.read()
        gave_up = threading.Event()

        def work() -> tuple[ClassifyResponse, dict[str, float]]:
            return classify_upload(classifier, data, text, max_pixels=settings.max_image_pixels,
                                   max_text_chars=settings.max_text_chars, cancelled=gave_up.is_set)

        try:
            with anyio.fail_after(settings.request_timeout_s):
                # OCR and inference block: they run in a worker thread. On time-out the thread is left
                # to finish its current stage and then stops (``gave_up``).
                response, timings = await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
        except TimeoutError as err:
            gave_up.set()
            raise ApiError(
                504, "timeout",
                f"classifying this meme took longer than the {settings.request_timeout_s:g} s allowed; "
                "retry later, or send the text to skip OCR",
            ) from err
        metrics.observe_stages(timings)
        return response

    @app.get("/healthz", response_model=HealthResponse, summary="Liveness: the process is up")
    async def healthz() -> HealthResponse:
        return HealthResponse()

    @app.get(
        "/readyz", response_model=ReadyResponse, summary="Readiness: models and OCR loaded, backend ready",
        responses=_error_responses(503),
    )
    async def readyz(request: Request) -> ReadyResponse:
        classifier = _classifier(request)
        if not classifier.ready():
            raise ApiError(503, "backend_not_ready", f"the {classifier.backend.name} inference backend is not ready")
        return ReadyResponse(
            model_version=classifier.manifest.repository_version,
            backend=classifier.backend.name,
            ocr=classifier.ocr.name,
            models=[m.name for m in classifier.members],
        )

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory service.app:app_from_env``: settings from MEMOTION_* variables."""
    settings = GatewaySettings()
    configure_logging(settings.log_level)
    return create_app(settings)
