"""Scaling on one node, end to end on real servers: several gateway worker processes whose
Prometheus metrics add up, and the result cache shared through a real redis-server by processes
and by gateways, never across model versions."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.launchers.gateway_process import GatewayProcess
from tests.gateway_fixtures import photo_jpeg, start_gateway
from tests.redis_fixtures import redis_url  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

ROUTE = "/v1/classify"


def samples(text: str, name: str) -> Iterable[tuple[dict[str, str], float]]:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                yield sample.labels, sample.value


def total(text: str, name: str, **labels: str) -> float:
    return sum(value for have, value in samples(text, name) if all(have.get(k) == v for k, v in labels.items()))


def classify(base_url: str, image: bytes, text: str, headers: dict[str, str] | None = None) -> dict:
    response = httpx.post(
        base_url + ROUTE,
        json={"image": base64.b64encode(image).decode(), "text": text},
        headers=headers or {},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    return response.json()


def worker_pids(gateway: GatewayProcess) -> list[int]:
    """The processes whose parent is the gateway's uvicorn supervisor."""
    assert gateway._process is not None
    parent = gateway._process.pid
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            # uvicorn's workers (multiprocessing spawn), not multiprocessing's resource tracker
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"resource_tracker" not in cmdline:
                children.append(int(entry.name))
    return children


def per_process_requests(folder: Path) -> dict[str, float]:
    """memotion_requests_total of each process, from its own files in the multiprocess folder."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    out = {}
    for db in folder.glob("counter_*.db"):
        pid = db.stem.split("_")[-1]
        single = folder.parent / f"single-{pid}"
        single.mkdir(exist_ok=True)
        shutil.copy(db, single / db.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(single))
        out[pid] = total(generate_latest(registry).decode(), "memotion_requests_total", route=ROUTE, status="200")
    return out


def test_worker_processes_serve_one_port_and_their_metrics_add_up(model_repository: Path, tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    env = {
        "MEMOTION_PROCESSES": "2",
        "MEMOTION_OCR": "none",
        "MEMOTION_WORKERS": "8",
        "MEMOTION_RESULT_CACHE": "none",
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
    }
    gateway = GatewayProcess(model_repository, env=env)
    with gateway as base_url:
        assert len(worker_pids(gateway)) == 2
        memes = [(photo_jpeg(seed=i), f"caption {i}") for i in range(16)]
        with ThreadPoolExecutor(4) as pool:  # new connections: the workers share them out
            answers = list(pool.map(lambda meme: classify(base_url, *meme), memes))
        assert len(answers) == 16
        for _ in range(3):  # whichever worker answers /metrics reports the whole node
            text = httpx.get(base_url + "/metrics", timeout=30).text
            assert total(text, "memotion_requests_total", route=ROUTE, status="200") == 16
            # every meme went through every member's batcher (the warm-ups too)
            assert total(text, "memotion_batch_size_sum") >= 16 * len(answers[0]["votes"])
        by_process = per_process_requests(folder)
        assert sum(by_process.values()) == 16
        print("requests per worker process:", by_process)


def test_cache_shared_through_redis_by_processes_and_never_across_versions(
    model_repository: Path,
    tmp_path: Path,
    redis_url: str,  # noqa: F811
) -> None:
    settings = {"processes": 2, "ocr": "none", "result_cache": "redis", "result_cache_redis_url": redis_url}
    meme, text = photo_jpeg(seed=99), "a repost"
    with start_gateway(model_repository, **settings) as base_url:
        first = classify(base_url, meme, text)
        again = classify(base_url, meme, text)  # maybe the other process: the cache is Redis
        fresh = classify(base_url, meme, text, {"Cache-Control": "no-cache"})
        metrics = httpx.get(base_url + "/metrics", timeout=30).text
    assert again["task_a"] == first["task_a"] and fresh["task_a"] == first["task_a"]
    assert total(metrics, "memotion_result_cache_lookups_total", result="hit") == 1
    assert total(metrics, "memotion_result_cache_lookups_total", result="bypass") == 1

    upgraded = tmp_path / "model_repository"
    shutil.copytree(model_repository, upgraded)
    manifest = json.loads((upgraded / "manifest.json").read_text())
    manifest["repository_version"] += "-next"
    (upgraded / "manifest.json").write_text(json.dumps(manifest))
    with start_gateway(upgraded, **settings) as base_url:
        answer = classify(base_url, meme, text)
        metrics = httpx.get(base_url + "/metrics", timeout=30).text
    assert answer["model_version"] == manifest["repository_version"] != first["model_version"]
    assert total(metrics, "memotion_result_cache_lookups_total", result="hit") == 0
    assert total(metrics, "memotion_result_cache_lookups_total", result="miss") == 1
