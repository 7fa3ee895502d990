"""The jobs' database access. Every state change is one short transaction guarded by the lease:

* :func:`claim_job` takes a queued job, or a running one whose lease ran out (its worker died), with a
  conditional UPDATE, so of several processes only one wins;
* :func:`complete_chunk` stores a chunk's records and advances the progress in one transaction, and
  only while the caller still holds the lease on a running job: a chunk is recorded once or not at
  all, and a worker that lost its job (cancelled, taken over) stores nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, false, func, insert, or_, select, true, update

from service.store.engine import Database
from service.store.jobs_schema import Job, JobItem
from service.store.schema import utcnow

ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")


class TooManyActiveJobs(Exception):
    """The owner already has the allowed number of queued or running jobs."""


class JobFinished(Exception):
    """The job has already finished; it cannot be cancelled any more."""


class LeaseLost(Exception):
    """The worker no longer holds the job (cancelled, or taken over after its lease ran out)."""


@dataclass(frozen=True)
class JobInput:
    item_id: str
    image: str | None  # base64 (inline) or a file path (path source)
    text: str | None


@dataclass(frozen=True)
class NewJob:
    owner: str
    source: str  # items or path
    source_path: str | None
    thresholds: Mapping[str, float]
    callback_url: str | None


def create_job(db: Database, job: NewJob, items: Sequence[JobInput], max_active: int) -> Job:
    """Store a queued job and its items in one transaction."""
    with db.session() as session:
        active = session.scalar(
            select(func.count()).select_from(Job).where(Job.owner == job.owner, Job.status.in_(ACTIVE))
        )
        if (active or 0) >= max_active:
            raise TooManyActiveJobs(f"{active} jobs of this key are queued or running; at most {max_active} may be")
        row = Job(
            id=uuid.uuid4().hex,
            owner=job.owner,
            status="queued",
            source=job.source,
            source_path=job.source_path,
            thresholds=dict(job.thresholds),
            total=len(items),
            done=0,
            errors=0,
            lease_expires=0.0,
            callback_url=job.callback_url,
            webhook_attempts=0,
            webhook_next_at=0.0,
        )
        session.add(row)
        session.flush()
        if items:
            session.execute(
                insert(JobItem),
                [
                    {"job_id": row.id, "position": i, "item_id": it.item_id, "image": it.image, "text": it.text}
                    | {"done": False}
                    for i, it in enumerate(items)
                ],
            )
        return row


def get_job(db: Database, job_id: str, owner: str) -> Job | None:
    """The job, if ``owner`` owns it (another key's job is as good as absent)."""
    with db.session() as session:
        return session.scalar(select(Job).where(Job.id == job_id, Job.owner == owner))


def list_jobs(db: Database, owner: str, limit: int) -> list[Job]:
    with db.session() as session:
        query = select(Job).where(Job.owner == owner).order_by(Job.created_at.desc(), Job.id).limit(limit)
        return list(session.scalars(query))


def _claimable(now: float) -> Any:
    return Job.status.in_(ACTIVE) & or_(Job.lease_owner.is_(None), Job.lease_expires < now)


def claim_job(db: Database, worker: str, lease_s: float) -> Job | None:
    """Take the oldest job nobody holds (queued, or running with an expired lease)."""
    now = time.time()
    with db.session() as session:
        candidates = session.scalars(select(Job.id).where(_claimable(now)).order_by(Job.created_at).limit(4))
        for job_id in list(candidates):
            claimed = session.execute(
                update(Job)
                .where(Job.id == job_id, _claimable(now))
                .values(lease_owner=worker, lease_expires=now + lease_s, status="running", updated_at=utcnow())
            )
            if claimed.rowcount == 1:  # type: ignore[attr-defined]
                return session.get(Job, job_id)
    return None


def _held(job_id: str, worker: str) -> Any:
    return (Job.id == job_id) & (Job.lease_owner == worker) & (Job.status == "running")


def renew_lease(db: Database, job_id: str, worker: str, lease_s: float) -> bool:
    with db.session() as session:
        result = session.execute(update(Job).where(_held(job_id, worker)).values(lease_expires=time.time() + lease_s))
        return result.rowcount == 1  # type: ignore[attr-defined]


def release_job(db: Database, job_id: str, worker: str) -> None:
    """Give a running job back (gateway shutdown): another worker resumes it at once."""
    with db.session() as session:
        session.execute(update(Job).where(_held(job_id, worker)).values(lease_owner=None, lease_expires=0.0))


def pending_items(db: Database, job_id: str, limit: int) -> list[JobItem]:
    with db.session() as session:
        query = (
            select(JobItem)
            .where(JobItem.job_id == job_id, JobItem.done == false())
            .order_by(JobItem.position)
            .limit(limit)
        )
        return list(session.scalars(query))


def complete_chunk(
    db: Database, job_id: str, worker: str, lease_s: float, records: Mapping[int, dict[str, Any]]
) -> None:
    """Store the records (by position) and the progress together; LeaseLost (nothing stored) if the
    worker no longer holds the running job."""
    errors = sum(1 for record in records.values() if record.get("status") != "ok")
    with db.session() as session:
        progressed = session.execute(
            update(Job)
            .where(_held(job_id, worker))
            .values(
                done=Job.done + len(records),
                errors=Job.errors + errors,
                lease_expires=time.time() + lease_s,
                updated_at=utcnow(),
            )
        )
        if progressed.rowcount != 1:  # type: ignore[attr-defined]
            raise LeaseLost(job_id)
        for position, record in records.items():
            stored = session.execute(
                update(JobItem)
                .where(JobItem.job_id == job_id, JobItem.position == position, JobItem.done == false())
                .values(done=True, record=record, scored_by=worker, image=None)  # the upload is not kept
            )
            if stored.rowcount != 1:  # type: ignore[attr-defined]
                raise LeaseLost(f"{job_id}: item {position} was already recorded")  # rolls the chunk back


def _finished_values(status: str, callback_url: str | None) -> dict[str, Any]:
    values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "updated_at": utcnow()}
    values |= {"lease_owner": None, "lease_expires": 0.0}
    if callback_url:
        values |= {"webhook_status": "pending", "webhook_next_at": time.time()}
    return values


def finish_job(db: Database, job: Job, worker: str, status: str = "succeeded", error: str | None = None) -> bool:
    with db.session() as session:
        values = _finished_values(status, job.callback_url) | {"error": error}
        result = session.execute(update(Job).where(_held(job.id, worker)).values(**values))
        return result.rowcount == 1  # type: ignore[attr-defined]


def cancel_job(db: Database, job_id: str, owner: str) -> Job | None:
    """Cancel a queued or running job (its worker stops at its next chunk); None if not found,
    JobFinished if it has already succeeded or failed. Cancelling twice is fine."""
    with db.session() as session:
        job = session.scalar(select(Job).where(Job.id == job_id, Job.owner == owner))
        if job is None:
            return None
        if job.status in ("succeeded", "failed"):
            raise JobFinished(f"job {job_id} has already {job.status}")
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status.in_(ACTIVE))
            .values(**_finished_values("cancelled", job.callback_url))
        )
    return get_job(db, job_id, owner)


def result_records(db: Database, job_id: str, after: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
    """Up to ``limit`` stored records after position ``after``, in order."""
    with db.session() as session:
        query = (
            select(JobItem.position, JobItem.record)
            .where(JobItem.job_id == job_id, JobItem.done == true(), JobItem.position > after)
            .order_by(JobItem.position)
            .limit(limit)
        )
        return [(position, record or {}) for position, record in session.execute(query)]


def delete_finished_before(db: Database, cutoff: datetime) -> int:
    """Remove jobs (items and results too) that finished before ``cutoff``; how many."""
    with db.session() as session:
        old = list(session.scalars(select(Job.id).where(Job.status.in_(FINISHED), Job.finished_at < cutoff)))
        if old:
            session.execute(delete(JobItem).where(JobItem.job_id.in_(old)))
            session.execute(delete(Job).where(Job.id.in_(old)))
        return len(old)


def claim_webhook(db: Database, hold_s: float) -> Job | None:
    """A finished job whose notice is due; pushes its next time ahead by ``hold_s`` so no other
    worker sends it meanwhile."""
    now = time.time()
    due = (Job.webhook_status == "pending") & (Job.webhook_next_at <= now)
    with db.session() as session:
        for job_id in list(session.scalars(select(Job.id).where(due).order_by(Job.webhook_next_at).limit(4))):
            claimed = session.execute(update(Job).where(Job.id == job_id, due).values(webhook_next_at=now + hold_s))
            if claimed.rowcount == 1:  # type: ignore[attr-defined]
                return session.get(Job, job_id)
    return None


def record_webhook(db: Database, job_id: str, error: str | None, retry_at: float | None) -> None:
    """One delivery attempt: delivered (``error`` None), retried at ``retry_at``, or given up (None)."""
    if error is None:
        status = "delivered"
    else:
        status = "pending" if retry_at is not None else "failed"
    with db.session() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                webhook_status=status,
                webhook_attempts=Job.webhook_attempts + 1,
                webhook_next_at=retry_at or 0.0,
                webhook_error=error,
            )
        )
