"""Async jobs against the batch endpoint, same gateway, same memes, same run.

    python bench/jobs.py                                  # random-init tiny models, SQLite
    python bench/jobs.py --repository model_repository --items 1000
    python bench/jobs.py --database-url postgresql://user@host/db

Starts `memotion serve` (a real process on loopback, OCR off, the memes' own text sent along) and
scores ``--items`` real memes (../shared/data/memotion1-train-128px) twice: through
``POST /v1/classify/batch`` in batches of ``--batch`` sent one after another (the baseline), and as
one ``POST /v1/jobs`` polled until it succeeded, its chunks of ``--chunk`` each recorded in the
database with the progress. Reports memes/s of each, their ratio, and the time to download the
job's results (JSON Lines and Parquet). Prints a table, writes JSON (default bench/results/jobs.json).
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from service.launchers.gateway_process import GatewayProcess  # noqa: E402

MEMES = ROOT / "../shared/data/memotion1-train-128px"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, help="an exported repository (default: random tiny models)")
    parser.add_argument("--items", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32, help="items per /v1/classify/batch request")
    parser.add_argument("--chunk", type=int, default=16, help="MEMOTION_JOBS_CHUNK_SIZE")
    parser.add_argument("--database-url", help="default: a SQLite file in a temporary folder")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/jobs.json")
    return parser.parse_args()


def real_memes(count: int) -> list[dict[str, str]]:
    with (MEMES / "labels.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[:count]
    return [
        {"id": r["id"], "image": base64.b64encode((MEMES / r["image_path"]).read_bytes()).decode(), "text": r["text"]}
        for r in rows
    ]


def tiny_repository(workdir: Path) -> Path:
    from serving import TINY_CLIP, random_run  # bench/serving.py

    from training.export import export_run

    run_dir = random_run(TINY_CLIP, workdir / "run", log=lambda _: None)
    return export_run(run_dir, workdir / "model_repository", log=lambda _: None)


def via_batches(base: str, items: list[dict[str, str]], batch: int) -> float:
    start = time.perf_counter()
    for begin in range(0, len(items), batch):
        answer = httpx.post(f"{base}/v1/classify/batch", json={"items": items[begin : begin + batch]}, timeout=300)
        answer.raise_for_status()
        assert answer.json()["failed"] == 0, answer.text[:500]
    return time.perf_counter() - start


def via_job(base: str, items: list[dict[str, str]]) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    created = httpx.post(f"{base}/v1/jobs", json={"items": items}, timeout=300)
    created.raise_for_status()
    job_id = created.json()["id"]
    while True:
        job = httpx.get(f"{base}/v1/jobs/{job_id}", timeout=30).json()
        if job["status"] not in ("queued", "running"):
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    assert job["status"] == "succeeded" and job["progress"]["errors"] == 0, job
    return elapsed, job


def download_s(base: str, job_id: str, fmt: str) -> tuple[float, int]:
    start = time.perf_counter()
    answer = httpx.get(f"{base}/v1/jobs/{job_id}/results?format={fmt}", timeout=300)
    answer.raise_for_status()
    return time.perf_counter() - start, len(answer.content)


def measure(base: str, args: argparse.Namespace) -> dict[str, Any]:
    items = real_memes(args.items)
    via_batches(base, items[: args.batch], args.batch)  # warm-up
    batch_s = via_batches(base, items, args.batch)
    job_s, job = via_job(base, items)
    jsonl_s, jsonl_bytes = download_s(base, job["id"], "jsonl")
    parquet_s, parquet_bytes = download_s(base, job["id"], "parquet")
    return {
        "items": len(items),
        "batch_memes_per_s": len(items) / batch_s,
        "job_memes_per_s": len(items) / job_s,
        "job_over_batch": batch_s / job_s,
        "results_jsonl_s": jsonl_s,
        "results_jsonl_bytes": jsonl_bytes,
        "results_parquet_s": parquet_s,
        "results_parquet_bytes": parquet_bytes,
    }


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="memotion-bench-jobs-") as folder:
        workdir = Path(folder)
        repository = args.repository or tiny_repository(workdir)
        env = {
            "MEMOTION_OCR": "none",
            "MEMOTION_LOG_LEVEL": "warning",
            "MEMOTION_MAX_BATCH_ITEMS": str(args.batch),
            "MEMOTION_JOBS_CHUNK_SIZE": str(args.chunk),
            "MEMOTION_JOBS_POLL_S": "0.05",
            "MEMOTION_DATABASE_URL": args.database_url or f"sqlite:///{workdir / 'memotion.db'}",
        }
        with GatewayProcess(repository, env=env) as base:
            result = measure(base, args)
    database = "postgresql" if args.database_url and args.database_url.startswith("postgres") else "sqlite"
    report = {
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        "settings": {"items": args.items, "batch": args.batch, "chunk": args.chunk, "database": database},
        "repository": str(args.repository or "random-init tiny models"),
        "result": result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nasync jobs vs /v1/classify/batch ({result['items']} real memes, {database}, chunk {args.chunk})")
    print(f"{'path':<34}{'memes/s':>10}")
    print(f"{'/v1/classify/batch (' + str(args.batch) + ' per request)':<34}{result['batch_memes_per_s']:>10.1f}")
    print(f"{'POST /v1/jobs until succeeded':<34}{result['job_memes_per_s']:>10.1f}")
    print(f"job / batch throughput: {result['job_over_batch']:.2f}")
    print(
        f"results download: JSON Lines {result['results_jsonl_s'] * 1000:.0f} ms ({result['results_jsonl_bytes']} B), "
        f"Parquet {result['results_parquet_s'] * 1000:.0f} ms ({result['results_parquet_bytes']} B)"
    )
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
