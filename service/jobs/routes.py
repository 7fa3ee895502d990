"""The jobs API: ``POST /v1/jobs`` (202 + the job), ``GET /v1/jobs``, ``GET /v1/jobs/{id}``,
``GET /v1/jobs/{id}/results?format=jsonl|parquet``, ``DELETE /v1/jobs/{id}`` (or ``POST
/v1/jobs/{id}/cancel``). A job belongs to the API key that created it: for another key it does not
exist (404)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import anyio
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.background import BackgroundTask

from service.api.classify_routes import ClientDep, GatekeeperDep, SettingsDep, current_classifier
from service.api.schemas import ErrorResponse
from service.core.errors import ApiError
from service.core.settings import GatewaySettings
from service.inference.thresholds import ThresholdError, resolve_thresholds
from service.jobs import results, store, webhooks
from service.jobs.sources import inline_inputs, path_inputs
from service.jobs.views import JOBS_ROUTE, JobList, JobRequest, JobView, job_view
from service.store.engine import Database
from service.store.lifecycle import DATABASE_OFF

T = TypeVar("T")
JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="The job's id (32 hex digits).")]


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse} for status in statuses}


def _database(request: Request) -> Database:
    database: Database | None = request.app.state.database
    if database is None and request.app.state.settings.database_url == DATABASE_OFF:
        raise ApiError(
            503, "database_off", "this gateway runs without a database (MEMOTION_DATABASE_URL=none): no jobs"
        )
    if database is None:
        raise ApiError(
            503, "not_ready", "the database is not open (the gateway is starting or stopping); retry shortly"
        )
    return database


async def _in_db(call: Callable[..., T], *args: Any) -> T:
    """Run a store call in a thread; a database that does not answer in time is a 503, not a 500."""
    try:
        return await anyio.to_thread.run_sync(call, *args)
    except SQLAlchemyError as err:
        raise ApiError(
            503, "database_unavailable", f"the database did not answer: {type(err).__name__}; retry"
        ) from err


def _check_callback(url: str | None, settings: GatewaySettings) -> None:
    if url is None:
        return
    if settings.webhook_secret is None:
        raise ApiError(422, "callbacks_disabled", "this gateway sends no webhooks (MEMOTION_WEBHOOK_SECRET is not set)")
    allowed = webhooks.Destinations(settings.webhook_allowed_hosts, settings.webhook_allowed_networks)
    try:
        webhooks.parse_callback(url, allowed)
    except webhooks.CallbackRefused as err:
        raise ApiError(422, "callback_not_allowed", str(err)) from err


async def _inputs(body: JobRequest, settings: GatewaySettings) -> list[store.JobInput]:
    if (body.items is None) == (body.source is None):
        raise ApiError(422, "invalid_request", "send either 'items' (as for /v1/classify/batch) or 'source', not both")
    if body.items is not None:
        if len(body.items) > settings.jobs_max_items:
            raise ApiError(
                413, "too_many_items", f"the job has {len(body.items)} items; at most {settings.jobs_max_items}"
            )
        return inline_inputs(body.items)
    assert body.source is not None
    return await anyio.to_thread.run_sync(
        path_inputs, body.source, settings.jobs_allowed_paths, settings.jobs_max_items
    )


async def create_job(
    request: Request,
    response: Response,
    body: JobRequest,
    client: ClientDep,
    settings: SettingsDep,
    gatekeeper: GatekeeperDep,
) -> dict[str, Any]:
    """``POST /v1/jobs``: check everything, store the job and its items, answer 202 at once."""
    database = _database(request)
    classifier = current_classifier(request)
    _check_callback(body.callback_url, settings)
    try:
        thresholds = resolve_thresholds(body.thresholds, settings.task_thresholds, classifier.manifest.task_b_names)
    except ThresholdError as err:
        raise ApiError(422, "invalid_thresholds", str(err)) from err
    inputs = await _inputs(body, settings)
    gatekeeper.charge(client, 1)
    source = "items" if body.items is not None else "path"
    new = store.NewJob(client.name, source, body.source, thresholds, body.callback_url)
    try:
        job = await _in_db(store.create_job, database, new, inputs, settings.jobs_max_active)
    except store.TooManyActiveJobs as err:
        raise ApiError(
            429, "too_many_jobs", f"{err}; wait for one to finish or cancel one", {"Retry-After": "10"}
        ) from err
    response.status_code = 202
    response.headers["Location"] = f"{JOBS_ROUTE}/{job.id}"
    return job_view(job)


async def _owned(request: Request, job_id: str, owner: str) -> Any:
    job = await _in_db(store.get_job, _database(request), job_id, owner)
    if job is None:
        raise ApiError(404, "job_not_found", f"no job {job_id} for this key")
    return job


async def get_job(request: Request, job_id: JobId, client: ClientDep) -> dict[str, Any]:
    """``GET /v1/jobs/{id}``: status and progress."""
    return job_view(await _owned(request, job_id, client.name))


async def list_jobs(
    request: Request, client: ClientDep, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> dict[str, Any]:
    """``GET /v1/jobs``: this key's newest jobs."""
    jobs = await _in_db(store.list_jobs, _database(request), client.name, limit)
    return {"jobs": [job_view(job) for job in jobs]}


async def cancel_job(request: Request, job_id: JobId, client: ClientDep) -> dict[str, Any]:
    """``DELETE /v1/jobs/{id}`` / ``POST /v1/jobs/{id}/cancel``: stop a queued or running job."""
    try:
        job = await _in_db(store.cancel_job, _database(request), job_id, client.name)
    except store.JobFinished as err:
        raise ApiError(409, "job_finished", str(err)) from err
    if job is None:
        raise ApiError(404, "job_not_found", f"no job {job_id} for this key")
    return job_view(job)


async def job_results(
    request: Request,
    job_id: JobId,
    client: ClientDep,
    format: Annotated[Literal["jsonl", "parquet"], Query(description="jsonl (default) or parquet")] = "jsonl",
) -> Response:
    """``GET /v1/jobs/{id}/results``: the records stored so far, in item order (all once succeeded)."""
    database = _database(request)
    job = await _owned(request, job_id, client.name)
    headers = {"Memotion-Job-Status": job.status, "Memotion-Job-Done": str(job.done)}
    if format == "jsonl":
        return StreamingResponse(
            results.jsonl_chunks(database, job.id), media_type="application/x-ndjson", headers=headers
        )
    manifest = current_classifier(request).manifest
    try:
        path = await _in_db(results.write_parquet, database, job.id, manifest)
    except ImportError as err:
        raise ApiError(501, "parquet_unavailable", "Parquet needs pyarrow (memotion[score])") from err
    return FileResponse(
        path,
        media_type="application/vnd.apache.parquet",
        filename=f"{job.id}.parquet",
        headers=headers,
        background=BackgroundTask(path.unlink, missing_ok=True),
    )


def jobs_router() -> APIRouter:
    router = APIRouter(tags=["jobs"])
    auth = (401, 404, 422, 503)
    router.add_api_route(
        JOBS_ROUTE,
        create_job,
        methods=["POST"],
        status_code=202,
        response_model=JobView,
        summary="Start an async job",
        description="The /v1/classify/batch body (`items`, `thresholds`) without its item limit, or a "
        "`source` path the deployment allows; optional `callback_url` for the signed result notice.",
        responses=_errors(401, 403, 413, 422, 429, 503),
    )
    router.add_api_route(JOBS_ROUTE, list_jobs, methods=["GET"], response_model=JobList, summary="This key's jobs")
    router.add_api_route(
        JOBS_ROUTE + "/{job_id}",
        get_job,
        methods=["GET"],
        response_model=JobView,
        summary="A job's status and progress",
        responses=_errors(*auth),
    )
    router.add_api_route(
        JOBS_ROUTE + "/{job_id}/results",
        job_results,
        methods=["GET"],
        summary="A job's results (JSON Lines or Parquet)",
        response_class=Response,
        responses={
            200: {"content": {"application/x-ndjson": {}, "application/vnd.apache.parquet": {}}},
            **_errors(*auth),
        },
    )
    for method, path in (("DELETE", JOBS_ROUTE + "/{job_id}"), ("POST", JOBS_ROUTE + "/{job_id}/cancel")):
        router.add_api_route(
            path,
            cancel_job,
            methods=[method],
            response_model=JobView,
            summary="Cancel a job",
            responses=_errors(*auth, 409),
        )
    return router
