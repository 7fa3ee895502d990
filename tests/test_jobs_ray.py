"""A path job's chunk on Ray (``MEMOTION_JOBS_RAY_ADDRESS``): the same records as the in-process
batch scorer, in the job's item order."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.core.settings import GatewaySettings
from service.inference.classifier import MemeClassifier
from service.jobs.scorer import score_items
from service.scoring.local import discover_items
from service.store.jobs_schema import JobItem

pytestmark = pytest.mark.slow


def test_a_path_chunk_on_ray_matches_the_local_scorer(model_repository: Path, synthetic_data: Path) -> None:
    ray = pytest.importorskip("ray")
    from service.scoring.ray_cluster import init_ray

    found = discover_items(synthetic_data / "val.csv")[:6]
    items = [JobItem(position=i, item_id=it.id, image=it.image, text=it.text) for i, it in enumerate(found)]
    local_settings = GatewaySettings(model_repository=model_repository, ocr="none")
    classifier = MemeClassifier.from_settings(local_settings)
    try:
        local_chunk = score_items(classifier, "path", items, {}, local_settings)
        init_ray("local", num_cpus=2)
        try:
            remote_chunk = score_items(
                classifier, "path", items, {}, local_settings.model_copy(update={"jobs_ray_address": "local"})
            )
        finally:
            ray.shutdown()
    finally:
        classifier.close()
    local, remote = local_chunk.records, remote_chunk.records
    assert list(remote) == list(local) == list(range(6))
    assert list(local_chunk.answers) == list(range(6)) and remote_chunk.answers == {}  # Ray: records only
    for position, record in remote.items():
        assert record["id"] == found[position].id and record["status"] == "ok"
        for key, value in record.items():
            expected = local[position][key]
            assert value == (pytest.approx(expected) if isinstance(value, float) else expected), key
