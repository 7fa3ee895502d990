"""The HTTP gateway: ``create_app(settings)`` builds the FastAPI application.

Routes: ``POST /v1/classify``, ``POST /v1/classify/batch`` (service/api/classify_routes.py),
``GET /healthz``, ``GET /readyz``, ``GET /metrics`` (service/api/probe_routes.py), the dashboard at
``/ui`` (service/api/ui), the async jobs under ``/v1/jobs`` (service/jobs, with their background worker).
"""

import logging
import resource
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from memotion.voters import served_voters
from service.access.admission import Admission
from service.access.gatekeeper import Gatekeeper
from service.access.staff import StaffGate
from service.api.admin_routes import admin_router
from service.api.body_limit import BodyLimitMiddleware
from service.api.classify_routes import BATCH_ROUTE, classify_router
from service.api.docs import mount_docs
from service.api.error_boundary import ErrorBoundaryMiddleware
from service.api.model_card import model_card_router
from service.api.probe_routes import probe_router
from service.api.request_context import RequestContextMiddleware
from service.api.review_routes import review_router
from service.api.ui import mount_ui
from service.core.errors import GatewayStartupError, install_error_handlers
from service.core.logging_config import configure_logging
from service.core.metrics import GatewayMetrics
from service.core.settings import GatewaySettings
from service.inference.backends import BackendUnavailable
from service.inference.classifier import MemeClassifier
from service.inference.decode_budget import DecodeBudget
from service.inference.result_cache import create_result_cache
from service.jobs.routes import jobs_router
from service.jobs.views import JOBS_ROUTE
from service.jobs.worker import JobWorker
from service.moderation.moderator import moderator_for
from service.moderation.retention import RetentionWorker
from service.store.lifecycle import DATABASE_OFF, open_database

logger = logging.getLogger("memotion.gateway")

API_VERSION = "1"


async def load_classifier(settings: GatewaySettings) -> MemeClassifier:
    """Load the models and run one warm-up classification; GatewayStartupError if unusable."""
    backend = settings.backend if settings.backend == "triton" else settings.engine
    logger.info("loading model repository %s (backend %s, ocr %s)", settings.model_repository, backend, settings.ocr)
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
    return classifier


def resident_mib() -> float:
    """This process's resident memory (VmRSS; peak RSS where /proc is absent), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@asynccontextmanager
async def moderation(app: FastAPI, settings: GatewaySettings) -> AsyncIterator[None]:
    """The database (``app.state.database``, schema migrated or checked), the moderator on it and the
    image retention thread; nothing with MEMOTION_DATABASE_URL=none (no decisions, no queue)."""
    if settings.database_url == DATABASE_OFF:
        logger.warning("MEMOTION_DATABASE_URL=none: no policies, no decision blocks, no review queue")
        yield
        return
    try:
        database = await anyio.to_thread.run_sync(open_database, settings)
    except GatewayStartupError as err:
        logger.error("memotion gateway cannot start: %s", err)
        raise
    app.state.database = database
    app.state.moderator = moderator_for(database, settings.policy_refresh_s, app.state.decode_budget)
    retention = RetentionWorker(database, settings.review_retention_days)
    retention.start()
    try:
        yield
    finally:
        retention.stop()
        app.state.moderator = app.state.database = None
        database.close()


@asynccontextmanager
async def job_worker(app: FastAPI, settings: GatewaySettings) -> AsyncIterator[None]:
    """The async jobs' background worker (service/jobs) on the open database, sharing the requests'
    decode memory budget; none with MEMOTION_JOBS_ENABLED=false or without a database."""
    if app.state.database is None or not settings.jobs_enabled:
        yield
        return
    worker = JobWorker(
        app.state.database,
        lambda: app.state.classifier,
        settings,
        app.state.decode_budget,
        moderator=lambda: app.state.moderator,  # decisions under the job owner's policy, as for answers
    )
    worker.start()
    try:
        yield
    finally:  # finishes its chunk, gives its job back for another process to resume
        await anyio.to_thread.run_sync(worker.stop, settings.shutdown_grace_s)


def log_ready(settings: GatewaySettings, classifier: MemeClassifier, seconds: float) -> None:
    """The start-up line (time, resident memory, members) and the voters per head (memotion/voters.py)."""
    logger.info(
        "ready in %.1f s (resident memory %.0f MiB): repository %s version %s, members %s",
        seconds,
        resident_mib(),
        settings.model_repository,
        classifier.manifest.repository_version,
        [m.name for m in classifier.members],
    )
    manifest = classifier.manifest
    for line in served_voters(manifest.ensemble, [t.name for t in manifest.tasks]):
        (logger.warning if line.startswith("WARNING") else logger.info)(line)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The database (see ``moderation``), the classifier (``app.state.classifier``) and the job worker
    live from startup to shutdown; None outside."""
    settings: GatewaySettings = app.state.settings
    started = time.perf_counter()
    async with moderation(app, settings):
        classifier = await load_classifier(settings)
        classifier.set_batch_observer(app.state.metrics)  # the embedded backend's dynamic batchers
        app.state.classifier = classifier
        try:
            async with job_worker(app, settings):
                log_ready(settings, classifier, time.perf_counter() - started)
                yield
        finally:
            app.state.classifier = None
            classifier.close()
            if app.state.result_cache is not None:
                app.state.result_cache.close()


def add_middleware(app: FastAPI, settings: GatewaySettings, metrics: GatewayMetrics) -> None:
    """Added last = outermost: RequestContext (id, log, metrics) wraps the error boundary (500s,
    clients that hang up), which wraps CORS, which wraps the body limit."""
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_upload_bytes,
        per_path={BATCH_ROUTE: settings.max_batch_bytes, JOBS_ROUTE: settings.jobs_max_bytes},
        body_timeout_s=settings.body_timeout_s,
        body_idle_timeout_s=settings.body_idle_timeout_s,
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "X-Model-Version", "Retry-After"],
            max_age=600,
        )
    app.add_middleware(ErrorBoundaryMiddleware)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    metrics = GatewayMetrics()
    app = FastAPI(
        title="memotion gateway",
        version=API_VERSION,
        description=(
            "Memotion 3 meme classification: Task A sentiment, Task B emotions, Task C intensities. "
            "Labels come from the served model repository's manifest."
        ),
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc are served offline by mount_docs (no CDN)
        redoc_url=None,
    )
    # What the routes' dependencies read (service/api/classify_routes.py).
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.gatekeeper = Gatekeeper(settings)
    app.state.admission = Admission(settings.workers, settings.max_queue, registry=metrics.registry)
    app.state.classifier = None
    app.state.database = None  # service.store.Database from start-up to shutdown
    app.state.moderator = None  # service.moderation.Moderator (policies, queue) on that database
    app.state.staff = StaffGate(settings.admin_keys)
    # None: MEMOTION_RESULT_CACHE=none; the Redis circuit breaker reports to the metrics.
    app.state.result_cache = create_result_cache(settings, observe=metrics.observe_cache_breaker)
    app.state.decode_budget = DecodeBudget(
        settings.decode_memory_bytes, settings.decode_wait_s, observe=metrics.observe_decode_bytes
    )
    install_error_handlers(app)
    add_middleware(app, settings, metrics)
    app.include_router(classify_router(settings))
    app.include_router(admin_router())  # /v1/admin/...: policies, assignments, audit (admin staff key)
    app.include_router(review_router())  # /v1/reviews/...: the review queue (moderator staff key)
    app.include_router(jobs_router())  # /v1/jobs: async jobs (API keys; needs the database)
    mount_ui(app)
    mount_docs(app)
    app.include_router(probe_router())
    app.include_router(model_card_router())  # GET /v1/model-card: models and their evaluation
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory service.api.app:app_from_env``: settings from MEMOTION_* variables."""
    settings = GatewaySettings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
