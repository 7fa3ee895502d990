"""``memotion score --ray ADDRESS``: the scoring job on a Ray cluster.

Ray Data reads the pending items, ``map_batches`` runs :class:`RayScorer` on a pool of actors (each
loads the model repository and OCR once, then scores chunk after chunk with the same
:func:`service.scoring.local.score_chunk_answers` as the local job), and the driver streams the finished records
into the same resumable output. Every node needs memotion installed and the model repository and
images at the same paths (a shared file system).

ADDRESS: ``local`` starts a Ray instance on this machine; anything else (``auto``,
``ray://head:10001``, ``head:6379``) is passed to ``ray.init(address=...)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from service.core.settings import GatewaySettings
from service.scoring.local import ScoreItem, score_chunk_answers


class RayScorer:
    """A Ray Data actor: one classifier, many batches."""

    def __init__(self, settings_json: str, thresholds: dict[str, float]) -> None:
        from service.inference.classifier import MemeClassifier

        self.settings = GatewaySettings.model_validate_json(settings_json)
        self.thresholds = thresholds
        self.classifier = MemeClassifier.from_settings(self.settings)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        from service.inference.imaging import ImageLimits

        items = [
            ScoreItem(str(i), None if image in (None, "") else str(image), None if text is None else str(text))
            for i, image, text in zip(batch["id"], batch["image"], batch["text"])
        ]
        records, _ = score_chunk_answers(
            self.classifier,
            items,
            max_pixels=ImageLimits.from_settings(self.settings),
            max_text_chars=self.settings.max_text_chars,
            thresholds=self.thresholds,
        )
        # One JSON string per record: the schema stays fixed whatever the tasks are called.
        return {"record": [json.dumps(r, ensure_ascii=False) for r in records]}


def init_ray(address: str, num_cpus: int | None = None) -> None:
    import ray

    if ray.is_initialized():
        return
    if address == "local":
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            object_store_memory=1 << 30,
            log_to_driver=False,
            configure_logging=False,
        )
    else:
        ray.init(address=address, log_to_driver=False, configure_logging=False)


def score_records_with_ray(
    pending: Sequence[ScoreItem],
    settings: GatewaySettings,
    address: str,
    *,
    chunk_size: int,
    actors: int,
    thresholds: dict[str, float],
) -> Iterator[list[dict[str, Any]]]:
    """Flat records of ``pending``, in batches as the actors finish them."""
    if not pending:
        return
    import ray

    init_ray(address)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the caller shows one bar for the whole job
    dataset = ray.data.from_items(
        [{"id": item.id, "image": item.image or "", "text": item.text} for item in pending],
        override_num_blocks=max(1, min(len(pending) // chunk_size + 1, 4 * actors)),
    )
    scored = dataset.map_batches(
        RayScorer,
        fn_constructor_kwargs={"settings_json": settings.model_dump_json(), "thresholds": dict(thresholds)},
        batch_size=chunk_size,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=1,
        batch_format="numpy",
    )
    for batch in scored.iter_batches(batch_size=chunk_size, batch_format="numpy"):
        yield [json.loads(str(record)) for record in batch["record"]]
