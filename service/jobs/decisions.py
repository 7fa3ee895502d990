"""A job's policy decisions: every answered item gets the ``decision`` block a single or batch answer
gets (service/api/decisions.py), under the policy of the job owner's API key, and the memes it sends
to review go to the review queue (request id ``job:<job id>:<index>``). Items scored on Ray (records
only) and error records carry ``decision: null``."""

from __future__ import annotations

from pathlib import Path

from service.api.decisions import decide_answers
from service.api.wire import decode_base64_image
from service.core.errors import ApiError
from service.inference.classifier import MemeClassifier
from service.jobs.scorer import ScoredChunk
from service.moderation.moderator import Moderator
from service.store.jobs_schema import Job, JobItem


def item_image(source: str, item: JobItem) -> bytes | None:
    """The item's image bytes for the review queue's hashes and thumbnail (None if gone meanwhile)."""
    if item.image is None:
        return None
    try:
        return Path(item.image).read_bytes() if source == "path" else decode_base64_image(item.image)
    except (ApiError, OSError):  # the item was scored; only the queued meme's picture is lost
        return None


def attach_job_decisions(
    moderator: Moderator, job: Job, classifier: MemeClassifier, items: list[JobItem], scored: ScoredChunk
) -> None:
    """Add ``decision`` to each of the chunk's records (blocking: the worker's thread)."""
    answered = [item for item in items if item.position in scored.answers]
    for item in answered:
        scored.answers[item.position].request_id = f"job:{job.id}:{item.position}"
    answers = [(scored.answers[item.position], item_image(job.source, item)) for item in answered]
    blocks = decide_answers(moderator, job.owner, classifier, answers)
    for item in items:
        scored.records[item.position]["decision"] = None
    for item, block in zip(answered, blocks, strict=True):
        scored.records[item.position]["decision"] = block.model_dump(mode="json", exclude_none=True)
