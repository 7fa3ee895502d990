"""What the database adds to ``POST /v1/classify``: p50/p99 latency with and without it, same run.

    python bench/database_cost.py --repository model_repository --requests 300

Starts one `memotion serve` per configuration on loopback (OCR off: the text is sent, so the run
measures the request path, not OCR) and sends the same memes (JSON, base64 PNG + text) one at a time:

  none            MEMOTION_DATABASE_URL=none: no database, no decision block (the baseline)
  sqlite-allow    SQLite, a policy with rules that decides every meme allow (no write)
  sqlite-review   SQLite, a policy that sends every meme to review (one INSERT with a thumbnail each)
  postgres-review PostgreSQL (Debian's, started here like the tests do), every meme to review

Rounds alternate between the configurations so that a busy machine slows them alike. Prints a table
(p50, p99, mean in ms and the ratio to the baseline) and writes JSON (default
bench/results/database_cost.json).
"""

from __future__ import annotations

import argparse
import base64
import json
import platform
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.access.keys import hash_key
from service.launchers.gateway_process import GatewayProcess
from tests.database_fixtures import PostgresServer, _postgres_bin
from tests.gateway_fixtures import render_meme

ADMIN = "mk_bench-admin-key-0123456789abcdef"
POLICIES = {
    "allow": {"rules": [{"head": "offensive", "threshold": 1.0, "action": "block"}]},
    "review": {"rules": [], "default_action": "review"},
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def start(stack: ExitStack, repository: Path, url: str, policy: str | None) -> str:
    env = {
        "MEMOTION_OCR": "none",
        "MEMOTION_DATABASE_URL": url,
        "MEMOTION_RESULT_CACHE": "none",
        "MEMOTION_LOG_LEVEL": "warning",
        "MEMOTION_ADMIN_KEYS": json.dumps([{"name": "bench", "sha256": hash_key(ADMIN)}]),
    }
    base = stack.enter_context(GatewayProcess(repository, env=env))
    if policy is not None:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        httpx.put(f"{base}/v1/admin/policies/{policy}", json=POLICIES[policy], headers=headers).raise_for_status()
        httpx.put(f"{base}/v1/admin/assignments/*", json={"policy": policy}, headers=headers).raise_for_status()
    return base


def bodies(count: int) -> list[dict[str, str]]:
    """Distinct memes (distinct bytes: no result cache or repost shortcut) with their text."""
    return [
        {"image": base64.b64encode(render_meme(f"meme {i}", "bench", (480, 360))).decode(), "text": f"meme {i} bench"}
        for i in range(count)
    ]


def run(urls: dict[str, str], memes: list[dict[str, str]], rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in urls}
    with httpx.Client(timeout=60.0) as client:
        for base in urls.values():  # warm-up
            for body in memes[:5]:
                client.post(f"{base}/v1/classify", json=body).raise_for_status()
        per_round = max(1, len(memes) // rounds)
        for r in range(rounds):
            chunk = memes[r * per_round : (r + 1) * per_round]
            for name, base in urls.items():
                for body in chunk:
                    start_s = time.perf_counter()
                    answer = client.post(f"{base}/v1/classify", json=body)
                    times[name].append((time.perf_counter() - start_s) * 1000.0)
                    answer.raise_for_status()
    return times


def summarise(times: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    base = times["none"]
    out = {}
    for name, values in times.items():
        out[name] = {
            "requests": len(values),
            "p50_ms": percentile(values, 0.5),
            "p99_ms": percentile(values, 0.99),
            "mean_ms": statistics.fmean(values),
            "p50_ratio": percentile(values, 0.5) / percentile(base, 0.5),
            "p99_ratio": percentile(values, 0.99) / percentile(base, 0.99),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--requests", type=int, default=300, help="per configuration")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("bench/results/database_cost.json"))
    args = parser.parse_args()
    memes = bodies(args.requests)
    with ExitStack() as stack, tempfile.TemporaryDirectory() as folder:
        urls = {
            "none": start(stack, args.repository, "none", None),
            "sqlite-allow": start(stack, args.repository, f"sqlite:///{folder}/allow.db", "allow"),
            "sqlite-review": start(stack, args.repository, f"sqlite:///{folder}/review.db", "review"),
        }
        bin_dir = _postgres_bin()
        if bin_dir is not None:
            server = PostgresServer(bin_dir)
            server.start()
            stack.callback(server.stop)
            urls["postgres-review"] = start(stack, args.repository, server.create_database(), "review")
        summary = summarise(run(urls, memes, args.rounds))
    print(
        f"\n{'configuration':<16} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'p50 x':>6} {'p99 x':>6}"
    )
    for name, row in summary.items():
        print(
            f"{name:<16} {row['requests']:>8} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} {row['mean_ms']:>8.2f} "
            f"{row['p50_ratio']:>6.2f} {row['p99_ratio']:>6.2f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {"machine": platform.platform(), "python": platform.python_version(), "results": summary, **vars(args)}
    args.out.write_text(json.dumps(record, indent=2, default=str))
    print(f"\nwritten {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
