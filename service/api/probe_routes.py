"""The operational routes: ``GET /healthz`` (liveness), ``GET /readyz`` (readiness) and
``GET /metrics`` (Prometheus, with a remote backend's own metrics appended)."""

from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.api.classify_routes import MetricsDep, current_classifier
from service.api.schemas import ErrorResponse, HealthResponse, ReadyResponse
from service.core.errors import ApiError
from service.inference.classifier import MemeClassifier


def _error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse} for status in statuses}


async def healthz() -> HealthResponse:
    return HealthResponse()


async def readyz(request: Request) -> ReadyResponse:
    classifier = current_classifier(request)
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


async def prometheus_metrics(request: Request, metrics: MetricsDep) -> Response:
    classifier: MemeClassifier | None = request.app.state.classifier
    extra = ""
    if classifier is not None:
        backend = classifier.backend
        metrics.observe_backend(backend.name, await anyio.to_thread.run_sync(backend.ready))
        # A remote backend's own metrics (Triton's nv_* families), appended as they are.
        if hasattr(backend, "metrics_text"):
            extra = await anyio.to_thread.run_sync(backend.metrics_text)
    return Response(metrics.render() + extra.encode(), media_type=metrics.content_type)


def probe_router() -> APIRouter:
    router = APIRouter()
    router.add_api_route(
        "/healthz", healthz, methods=["GET"], response_model=HealthResponse, summary="Liveness: the process is up"
    )
    router.add_api_route(
        "/readyz",
        readyz,
        methods=["GET"],
        response_model=ReadyResponse,
        summary="Readiness: models and OCR loaded, backend ready",
        responses=_error_responses(503),
    )
    router.add_api_route(
        "/metrics", prometheus_metrics, methods=["GET"], summary="Prometheus metrics", response_class=Response
    )
    return router
