"""`memotion score --ray`: Ray Data map_batches on an actor pool, on a local Ray instance; the
records must equal the local job's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.core.settings import GatewaySettings
from service.scoring.local import score

pytestmark = pytest.mark.slow


def test_ray_scoring_matches_local(model_repository: Path, synthetic_data: Path, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    settings = GatewaySettings(model_repository=model_repository, ocr="none")
    source = synthetic_data / "val.csv"
    local_out, ray_out = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    local = score(source, local_out, settings, chunk_size=8, progress=False)
    # A job that stopped after 5 memes: Ray scores only the rest.
    ray_out.write_text("".join(line + "\n" for line in local_out.read_text().splitlines()[:5]))
    from service.scoring.ray_cluster import init_ray

    init_ray("local", num_cpus=2)
    try:
        remote = score(source, ray_out, settings, chunk_size=8, ray_address="local", ray_actors=2, progress=False)
    finally:
        ray.shutdown()
    assert (remote.total, remote.skipped, remote.scored, remote.errors) == (local.total, 5, local.total - 5, 0)
    by_id = {r["id"]: r for r in map(json.loads, local_out.read_text().splitlines())}
    remote_records = [json.loads(line) for line in ray_out.read_text().splitlines()]
    assert sorted(r["id"] for r in remote_records) == sorted(by_id)
    for record in remote_records:
        expected = by_id[record["id"]]
        assert record.keys() == expected.keys()
        for key, value in record.items():
            assert value == (pytest.approx(expected[key]) if isinstance(value, float) else expected[key]), key
