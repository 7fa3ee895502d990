"""What the API says about a job (``GET /v1/jobs/{id}``, the webhook's body): the pydantic shapes
and :func:`job_view` that fills them from a row."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.api.batch import BatchItem
from service.api.wire import Thresholds, UnicodeText
from service.store.jobs_schema import Job

JOBS_ROUTE = "/v1/jobs"


class JobRequest(BaseModel):
    """The batch body (``items``, ``thresholds``) or a server-side ``source``, and a ``callback_url``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"items": [{"id": "meme-1", "text": "when the code finally compiles"}], "callback_url": None},
                {"source": "/data/memes/2026-12-05", "callback_url": "https://hooks.example.com/memotion"},
            ]
        },
    )

    items: list[BatchItem] | None = Field(
        default=None, min_length=1, description="The memes, as for /v1/classify/batch; at most MEMOTION_JOBS_MAX_ITEMS."
    )
    source: UnicodeText | None = Field(
        default=None,
        max_length=4096,
        description="Instead of items: a folder, table or Memotion data set on the server, inside "
        "MEMOTION_JOBS_ALLOWED_PATHS.",
    )
    thresholds: Thresholds | None = Field(default=None, description="Task B thresholds for every item.")
    callback_url: UnicodeText | None = Field(
        default=None, max_length=2048, description="Receives the signed result notice when the job ends."
    )


class Progress(BaseModel):
    done: int
    total: int
    errors: int = Field(description="Items whose record is an error (bad image, too long text, ...).")
    percent: float


class Callback(BaseModel):
    url: str
    status: Literal["pending", "delivered", "failed"] | None = Field(description="None until the job ends.")
    attempts: int
    last_error: str | None = None


class JobView(BaseModel):
    id: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    source: Literal["items", "path"]
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    progress: Progress
    error: str | None = None
    callback: Callback | None = None
    links: dict[str, str]


class JobList(BaseModel):
    jobs: list[JobView]


def job_view(job: Job) -> dict[str, Any]:
    """The JSON of a job (as ``JobView`` validates it)."""
    base = f"{JOBS_ROUTE}/{job.id}"
    callback = None
    if job.callback_url:
        callback = Callback(
            url=job.callback_url,
            status=job.webhook_status,  # type: ignore[arg-type]
            attempts=job.webhook_attempts,
            last_error=job.webhook_error,
        )
    percent = round(100.0 * job.done / job.total, 1) if job.total else 100.0
    view = JobView(
        id=job.id,
        status=job.status,  # type: ignore[arg-type]
        source=job.source,  # type: ignore[arg-type]
        created_at=job.created_at,
        updated_at=job.updated_at,
        finished_at=job.finished_at,
        progress=Progress(done=job.done, total=job.total, errors=job.errors, percent=percent),
        error=job.error,
        callback=callback,
        links={
            "self": base,
            "results_jsonl": f"{base}/results?format=jsonl",
            "results_parquet": f"{base}/results?format=parquet",
            "cancel": f"{base}/cancel",
        },
    )
    return view.model_dump(mode="json")
