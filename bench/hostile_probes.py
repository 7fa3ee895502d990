"""Issue 20's probes against a real gateway on loopback: statuses, time, the gateway's peak memory.

    python bench/hostile_probes.py --repository model_repository

Starts redis-server (Debian's) and `memotion serve` (shared result cache in that Redis, OCR off so
the probes measure the limits, not OCR) and reruns the attacks of issue 20:

1. the 32-item batch of 6000x6000 1-bit PNGs (4.5 KB each): status, seconds, resident memory of
   the gateway before / peak / after, what each item got;
2. lone surrogates at every entry (UTF-7 form field, JSON single and batch, explain, no-store,
   item id, thresholds name) next to a good batch item: statuses, and the good item's answer;
3. a follow-up request on the same keep-alive connection after every error status: kept, closed
   properly (``Connection: close``) or dropped;
4. clients that hang up mid-body: how /metrics counts them (500 vs 499) and tracebacks in the log;
5. Redis frozen (SIGSTOP): latency of text-only requests, healthy vs frozen (first request, then
   the median of the rest), and the circuit breaker's metrics;
6. a stalled upload: seconds to its 408; and SIGTERM with a stalled upload open: seconds to exit.

``--baseline /path/to/checkout`` runs the same probes first against that checkout's gateway (for
example main, before this issue), in the same run. Prints a table, writes JSON (default
bench/results/hostile_probes.json), exits 1 when a goal of the issue is missed (the batch over
+1 GiB or 10 s, any 500, any dropped connection, a hang-up counted as 500, frozen-Redis median over
50 ms added).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.hostile_checks import (
    ProbeGateway,
    batch_bomb,
    follow_ups,
    frozen_redis,
    hang_ups,
    shutdown_with_stalled_upload,
    stalled_upload,
    surrogates,
)


def goals(results: dict[str, Any]) -> dict[str, bool]:
    bomb, redis = results["batch_bomb"], results["frozen_redis"]
    statuses = [p["status"] for p in results["surrogates"]] + [p["status"] for p in results["follow_ups"]]
    return {
        "batch: at most +1 GiB": bomb["peak_rss_mib"] - bomb["rss_before_mib"] <= 1024,
        "batch: at most 10 s": bomb["seconds"] <= 10.0,
        "no 500 anywhere": 500 not in statuses and results["hang_ups"]["status_500"] == 0 and bomb["status"] != 500,
        "no dropped connection": 0 not in statuses and all(p["verdict"] != "dropped" for p in results["follow_ups"]),
        "hang-ups not 5xx": results["hang_ups"]["status_500"] == 0 and results["hang_ups"]["tracebacks"] == 0,
        "frozen redis: median <= 50 ms added": redis["added_median_ms"] <= 50.0,
    }


def print_table(results: dict[str, Any], verdicts: dict[str, bool]) -> None:
    bomb = results["batch_bomb"]
    print(f"\n{'probe':<58} result")
    name = f"1. batch of {bomb['items']} x {bomb['size']} 1-bit PNG ({bomb['body_kb']} KB body)"
    print(
        f"{name:<58} "
        f"{bomb['status']} in {bomb['seconds']:.2f} s; RSS {bomb['rss_before_mib']:.0f} -> peak "
        f"{bomb['peak_rss_mib']:.0f} -> after {bomb['rss_after_mib']:.0f} MiB; items {bomb['item_statuses']}"
    )
    for probe in results["surrogates"]:
        print(f"{'2. ' + probe['probe']:<58} {probe['status']} {probe['detail']}")
    for probe in results["follow_ups"]:
        print(f"{'3. follow-up after ' + probe['probe']:<58} {probe['status']} -> {probe['verdict']}")
    hang = results["hang_ups"]
    name = f"4. {hang['clients']} clients hang up mid-body"
    print(
        f"{name:<58} /metrics: 500 x{hang['status_500']}, "
        f"499 x{hang['status_499']}; tracebacks in log: {hang['tracebacks']}"
    )
    redis = results["frozen_redis"]
    name = f"5. redis frozen (SIGSTOP), {redis['requests']} requests"
    print(
        f"{name:<58} healthy median "
        f"{redis['healthy_median_ms']:.1f} ms; frozen: first {redis['frozen_first_ms']:.0f} ms, median of the rest "
        f"{redis['frozen_median_ms']:.1f} ms (+{redis['added_median_ms']:.1f} ms); breaker {redis['breaker']}"
    )
    stall, stop = results["stalled_upload"], results["shutdown"]
    print(f"{'6. stalled upload':<58} {stall['status']} after {stall['seconds']:.1f} s")
    print(f"{'6. SIGTERM with a stalled upload open':<58} exited in {stop['seconds']:.1f} s")
    print()
    for goal, met in verdicts.items():
        print(f"  {'met   ' if met else 'MISSED'} {goal}")


def run_probes(repository: Path, log_path: Path, items: int, side: int, code: Path | None) -> dict[str, Any]:
    """Every probe against one gateway (``code``: the checkout it runs; default this one)."""
    with ProbeGateway(repository, log_path, code) as gateway:
        results: dict[str, Any] = {
            "batch_bomb": batch_bomb(gateway, items, side),
            "surrogates": surrogates(gateway),
            "follow_ups": follow_ups(gateway),
            "hang_ups": hang_ups(gateway),
            "frozen_redis": frozen_redis(gateway),
            "stalled_upload": stalled_upload(gateway),
        }
        results["shutdown"] = shutdown_with_stalled_upload(gateway)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--items", type=int, default=32)
    parser.add_argument("--side", type=int, default=6000)
    parser.add_argument("--baseline", type=Path, default=None, help="a checkout (e.g. main) to probe first")
    parser.add_argument("--out", type=Path, default=Path("bench/results/hostile_probes.json"))
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    record: dict[str, Any] = {"machine": platform.platform(), "command": " ".join(sys.argv)}
    record["server_env"] = ProbeGateway.ENV
    if args.baseline is not None:
        baseline = run_probes(
            args.repository, args.out.with_suffix(".baseline.log"), args.items, args.side, args.baseline
        )
        print(f"\nBASELINE: the gateway of {args.baseline}")
        print_table(baseline, goals(baseline))
        record["baseline"] = {"code": str(args.baseline), "goals": goals(baseline), **baseline}
    results = run_probes(args.repository, args.out.with_suffix(".server.log"), args.items, args.side, None)
    verdicts = goals(results)
    print("\nTHIS TREE")
    print_table(results, verdicts)
    record.update({"seconds": round(time.perf_counter() - started, 1), "goals": verdicts, **results})
    args.out.write_text(json.dumps(record, indent=2, default=str))
    print(f"wrote {args.out}")
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
