"""The background worker of a gateway process: claims a job (under a lease), scores its pending items
chunk by chunk, each chunk's records stored with the progress in one transaction, and sends due
webhooks. Every gateway process (``MEMOTION_PROCESSES=N``) runs one; the lease lets only one hold a
job, and a job whose worker died is taken over when its lease runs out."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from sqlalchemy.exc import SQLAlchemyError

from service.core.settings import GatewaySettings
from service.inference.classifier import MemeClassifier
from service.inference.decode_budget import DecodeBudget
from service.jobs import store, webhooks
from service.jobs.decisions import attach_job_decisions
from service.jobs.scorer import score_items
from service.jobs.views import job_view
from service.moderation.moderator import Moderator
from service.store.engine import Database
from service.store.jobs_schema import Job

logger = logging.getLogger("memotion.jobs")

# Item errors that say "not now" (Triton down, the decode memory budget busy): the chunk is not
# recorded but scored again shortly.
RETRY_LATER = ("backend_unavailable", "decode_busy")
RETRY_S = 5.0
CLEANUP_EVERY_S = 600.0


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class JobWorker:
    """``start()`` runs the loop in a daemon thread; ``stop()`` finishes the current chunk, gives the
    job back (another process resumes it at once) and joins."""

    def __init__(
        self,
        db: Database,
        classifier: Callable[[], MemeClassifier | None],
        settings: GatewaySettings,
        decode_budget: DecodeBudget | None = None,
        moderator: Callable[[], Moderator | None] = lambda: None,
    ) -> None:
        self.db = db
        self.decode_budget = decode_budget
        self.moderator = moderator  # the decision blocks and the review queue (as for single answers)
        self.classifier = classifier
        self.settings = settings
        self.name = worker_name()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="memotion-jobs", daemon=True)
        self._held: str | None = None  # the job id under lease, renewed by the heartbeat
        self._heartbeat = threading.Thread(target=self._renew, name="memotion-jobs-lease", daemon=True)

    def start(self) -> None:
        logger.info("job worker %s started", self.name)
        self._thread.start()
        self._heartbeat.start()

    def stop(self, timeout_s: float = 60.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)
        self._heartbeat.join(timeout_s)

    def _loop(self) -> None:
        next_cleanup = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_cleanup:
                    next_cleanup = time.monotonic() + CLEANUP_EVERY_S
                    self._clean_up()
                busy = self._deliver_one() | self._run_one()
            except SQLAlchemyError as err:
                logger.warning("job worker: database unavailable (%s); retrying", err)
                busy = False
            except Exception:
                logger.exception("job worker: unexpected error; retrying")
                busy = False
            if not busy:
                self._stop.wait(self.settings.jobs_poll_s)

    def _clean_up(self) -> None:
        cutoff = datetime.now(timezone.utc) - timedelta(days=self.settings.jobs_retention_days)
        removed = store.delete_finished_before(self.db, cutoff)
        if removed:
            logger.info("deleted %d jobs finished more than %g days ago", removed, self.settings.jobs_retention_days)

    def _renew(self) -> None:
        """Keep the lease of the job being scored alive while a (slow) chunk runs."""
        while not self._stop.wait(self.settings.jobs_lease_s / 3):
            held = self._held
            if held is None:
                continue
            try:
                store.renew_lease(self.db, held, self.name, self.settings.jobs_lease_s)
            except SQLAlchemyError as err:
                logger.warning("job %s: lease not renewed (%s)", held, err)

    def _run_one(self) -> bool:
        classifier = self.classifier()
        if classifier is None:
            return False
        job = store.claim_job(self.db, self.name, self.settings.jobs_lease_s)
        if job is None:
            return False
        logger.info("job %s claimed by %s (%d/%d done)", job.id, self.name, job.done, job.total)
        self._held = job.id
        try:
            self._run(job, classifier)
        except SQLAlchemyError:
            raise  # the database, not the job: the lease runs out and the job is resumed
        except Exception as err:
            if self._stop.is_set():  # the models were unloaded under a chunk at shutdown: resume later
                store.release_job(self.db, job.id, self.name)
                return True
            # Bad items are records, never exceptions: this is systematic, so the job ends as failed.
            logger.exception("job %s failed", job.id)
            store.finish_job(self.db, job, self.name, "failed", f"{type(err).__name__}: {err}"[:500])
        finally:
            self._held = None
        return True

    def _run(self, job: Job, classifier: MemeClassifier) -> None:
        while True:
            if self._stop.is_set():
                store.release_job(self.db, job.id, self.name)
                logger.info("job %s given back at shutdown", job.id)
                return
            items = store.pending_items(self.db, job.id, self.settings.jobs_chunk_size)
            if not items:
                if store.finish_job(self.db, job, self.name):
                    logger.info("job %s succeeded", job.id)
                return
            scored = score_items(classifier, job.source, items, job.thresholds, self.settings, self.decode_budget)
            records = scored.records
            if self._stop.is_set() and any(r.get("error_code") == "internal_error" for r in records.values()):
                store.release_job(self.db, job.id, self.name)  # the models went away under the chunk
                return
            busy = {r["error_code"] for r in records.values() if r.get("error_code") in RETRY_LATER}
            if busy:
                logger.warning("job %s: %s; scoring the chunk again shortly", job.id, ", ".join(sorted(busy)))
                self._stop.wait(RETRY_S)
                if not store.renew_lease(self.db, job.id, self.name, self.settings.jobs_lease_s):
                    return  # cancelled (or taken over) meanwhile
                continue
            moderator = self.moderator()
            if moderator is not None:
                attach_job_decisions(moderator, job, classifier, items, scored)
            try:
                store.complete_chunk(self.db, job.id, self.name, self.settings.jobs_lease_s, records)
            except store.LeaseLost:
                logger.info("job %s: no longer held by %s (cancelled or taken over); stopping", job.id, self.name)
                return

    def _deliver_one(self) -> bool:
        secret = self.settings.webhook_secret
        if secret is None:
            return False
        hold_s = self.settings.webhook_timeout_s + 30.0
        job = store.claim_webhook(self.db, hold_s)
        if job is None or job.callback_url is None:
            return False
        attempt = job.webhook_attempts + 1
        body = json.dumps({"type": "job.finished", "job": job_view(job)}, separators=(",", ":")).encode()
        allowed = webhooks.Destinations(self.settings.webhook_allowed_hosts, self.settings.webhook_allowed_networks)
        try:
            webhooks.send(
                job.callback_url,
                body,
                secret.get_secret_value().encode(),
                allowed,
                self.settings.webhook_timeout_s,
                f"{job.id}.{attempt}",
            )
        except (webhooks.CallbackRefused, RuntimeError, OSError) as err:
            retry = attempt < self.settings.webhook_max_attempts
            retry_at = time.time() + webhooks.backoff_s(attempt, self.settings.webhook_backoff_s) if retry else None
            logger.warning("job %s: webhook attempt %d failed: %s", job.id, attempt, err)
            store.record_webhook(self.db, job.id, str(err)[:500], retry_at)
            return True
        logger.info("job %s: webhook delivered (attempt %d)", job.id, attempt)
        store.record_webhook(self.db, job.id, None, None)
        return True
