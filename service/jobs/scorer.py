"""Score one chunk of a job with the batch scorer: inline items as ``POST /v1/classify/batch``
scores them (:func:`service.api.batch.run_batch`), path items as `memotion score` does
(:func:`service.scoring.local.score_chunk_answers`, or its Ray actor pool when ``MEMOTION_JOBS_RAY_ADDRESS``
is set). Either way each item becomes one flat record (an error is a record too); the answered items'
full responses come along (not from Ray) for the policy decisions (service/jobs/decisions.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from service.api.batch import BatchItem, BatchOutcomes, run_batch
from service.api.classification import ClassifyOptions
from service.api.schemas import ClassifyResponse
from service.core.settings import GatewaySettings
from service.inference.classifier import MemeClassifier
from service.inference.decode_budget import DecodeBudget
from service.inference.imaging import ImageLimits
from service.scoring.local import ScoreItem, error_record, flatten_response, score_chunk_answers
from service.store.jobs_schema import JobItem

NEVER = lambda: False  # noqa: E731 - a chunk runs to its end; cancelling stops the job between chunks
Scored = tuple[list[dict[str, Any]], dict[int, ClassifyResponse]]  # records in order, answers by index


@dataclass(frozen=True)
class ScoredChunk:
    """A chunk's records by item position, and the answered items' responses by position (none for
    items scored on Ray: only their flat records come back)."""

    records: dict[int, dict[str, Any]]
    answers: dict[int, ClassifyResponse]


def score_inline(
    classifier: MemeClassifier,
    items: Sequence[JobItem],
    thresholds: Mapping[str, float],
    settings: GatewaySettings,
    decode_budget: DecodeBudget | None,
) -> Scored:
    batch = [BatchItem(id=item.item_id, image=item.image, text=item.text) for item in items]
    outcomes = BatchOutcomes([item.item_id for item in items])
    options = ClassifyOptions(thresholds=thresholds, decode_budget=decode_budget)
    limits = ImageLimits.from_settings(settings)
    run_batch(
        classifier, batch, outcomes, options, max_pixels=limits, max_text_chars=settings.max_text_chars, cancelled=NEVER
    )
    records, answers = [], {}
    for result in outcomes.finish(500, "internal_error", "the item was not scored"):
        if result.result is not None:
            answers[result.index] = result.result
            records.append(flatten_response(result.id, None, result.result.model_dump(mode="json")))
        else:
            error = result.error
            records.append(
                error_record(result.id, None, error.code if error else "internal_error", error.message if error else "")
            )
    return records, answers


def score_paths(
    classifier: MemeClassifier,
    items: Sequence[JobItem],
    thresholds: Mapping[str, float],
    settings: GatewaySettings,
    decode_budget: DecodeBudget | None,
) -> Scored:
    chunk = [ScoreItem(item.item_id, item.image, item.text) for item in items]
    if settings.jobs_ray_address:
        from service.scoring.ray_cluster import score_records_with_ray

        by_id = {
            record["id"]: record
            for batch in score_records_with_ray(
                chunk,
                settings,
                settings.jobs_ray_address,
                chunk_size=len(chunk),
                actors=settings.jobs_ray_actors,
                thresholds=dict(thresholds),
            )
            for record in batch
        }
        return [by_id[item.id] for item in chunk], {}
    return score_chunk_answers(
        classifier,
        chunk,
        max_pixels=ImageLimits.from_settings(settings),
        max_text_chars=settings.max_text_chars,
        thresholds=dict(thresholds),
        decode_budget=decode_budget,
    )


def score_items(
    classifier: MemeClassifier,
    source: str,
    items: Sequence[JobItem],
    thresholds: Mapping[str, float],
    settings: GatewaySettings,
    decode_budget: DecodeBudget | None = None,
) -> ScoredChunk:
    """Records (and answers) by item position. ``decode_budget``: the process's (the requests' too), so
    a job never decodes more pixels at once than the gateway allows; a chunk is one request's budget."""
    score = score_paths if source == "path" else score_inline
    records, answers = score(classifier, items, thresholds, settings, decode_budget)
    return ScoredChunk(
        {item.position: record for item, record in zip(items, records, strict=True)},
        {items[index].position: answer for index, answer in answers.items()},
    )
