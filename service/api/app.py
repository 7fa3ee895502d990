"""The HTTP gateway: ``create_app(settings)`` builds the FastAPI application.

Routes: ``POST /v1/classify``, ``POST /v1/classify/batch`` (service/api/classify_routes.py),
``GET /healthz``, ``GET /readyz``, ``GET /metrics``, the dashboard at ``/ui`` (service/api/ui).
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response

from service.access.admission import Admission
from service.access.gatekeeper import Gatekeeper
from service.api.body_limit import BodyLimitMiddleware
from service.api.classify_routes import BATCH_ROUTE, classify_router, current_classifier
from service.api.request_context import RequestContextMiddleware
from service.api.schemas import ErrorResponse, HealthResponse, ReadyResponse
from service.api.ui import mount_ui
from service.core.errors import ApiError, GatewayStartupError, install_error_handlers
from service.core.logging_config import configure_logging
from service.core.metrics import GatewayMetrics
from service.core.settings import GatewaySettings
from service.inference.backends import BackendUnavailable
from service.inference.classifier import MemeClassifier

logger = logging.getLogger("memotion.gateway")

API_VERSION = "1"


def _error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse} for status in statuses}


_classifier = current_classifier


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    metrics = GatewayMetrics()
    gatekeeper = Gatekeeper(settings)
    admission = Admission(settings.workers, settings.max_queue, registry=metrics.registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logger.info(
            "loading model repository %s (backend %s, ocr %s)",
            settings.model_repository,
            settings.backend,
            settings.ocr,
        )
        try:
            classifier = await anyio.to_thread.run_sync(MemeClassifier.from_settings, settings)
        except GatewayStartupError as err:
            logger.error("memotion gateway cannot start: %s", err)
            raise
        try:
            await anyio.to_thread.run_sync(classifier.warm_up)
        except BackendUnavailable as err:
            # A remote backend (Triton) that is down is not fatal: /readyz says 503 until it is up.
            logger.warning("inference backend not available yet, serving 503 until it is: %s", err)
        except Exception as err:
            classifier.close()
            logger.error("memotion gateway cannot start: a first classification failed: %s", err)
            raise GatewayStartupError(f"a first classification of a test image failed: {err}") from err
        app.state.classifier = classifier
        logger.info(
            "ready: repository %s version %s, members %s",
            settings.model_repository,
            classifier.manifest.repository_version,
            [m.name for m in classifier.members],
        )
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
    # Added last = outermost: RequestContext (id, log, metrics) wraps CORS, which wraps the body limit.
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_upload_bytes, per_path={BATCH_ROUTE: settings.max_batch_bytes}
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "X-Model-Version", "Retry-After"],
            max_age=600,
        )
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    app.include_router(classify_router(settings, metrics, admission, gatekeeper))
    mount_ui(app)

    @app.get("/healthz", response_model=HealthResponse, summary="Liveness: the process is up")
    async def healthz() -> HealthResponse:
        return HealthResponse()

    @app.get(
        "/readyz",
        response_model=ReadyResponse,
        summary="Readiness: models and OCR loaded, backend ready",
        responses=_error_responses(503),
    )
    async def readyz(request: Request) -> ReadyResponse:
        classifier = _classifier(request)
        if not await anyio.to_thread.run_sync(classifier.ready):
            problem = getattr(classifier.backend, "problem", "")
            raise ApiError(
                503,
                "backend_not_ready",
                f"the {classifier.backend.name} inference backend is not ready" + (f": {problem}" if problem else ""),
            )
        return ReadyResponse(
            model_version=classifier.manifest.repository_version,
            backend=classifier.backend.name,
            ocr=classifier.ocr.name,
            models=[m.name for m in classifier.members],
        )

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus_metrics(request: Request) -> Response:
        classifier: MemeClassifier | None = request.app.state.classifier
        extra = ""
        if classifier is not None:
            backend = classifier.backend
            metrics.observe_backend(backend.name, await anyio.to_thread.run_sync(backend.ready))
            # A remote backend's own metrics (Triton's nv_* families), appended as they are.
            if hasattr(backend, "metrics_text"):
                extra = await anyio.to_thread.run_sync(backend.metrics_text)
        return Response(metrics.render() + extra.encode(), media_type=metrics.content_type)

    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory service.api.app:app_from_env``: settings from MEMOTION_* variables."""
    settings = GatewaySettings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
