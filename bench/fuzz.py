"""Fuzz the real gateway for a few thousand cases: no 5xx, worst latency, peak server memory.

    python bench/fuzz.py --repository model_repository --examples 300

Starts `memotion serve` on loopback (OCR off by default so that the run measures the parsers and
limits, not OCR; ``--ocr easyocr`` to include it), then runs tests/fuzz_runner.py: Schemathesis on
every operation of the gateway's OpenAPI schema (valid and invalid data), hostile image files
(any size, mode, format, aspect ratio, truncation, metadata) as multipart and base64 JSON, batches,
hostile JSON bodies and thresholds, any method on any route with hostile headers. ``--examples``
cases per operation and per source. Prints a table per endpoint (cases, statuses, worst latency) and
the server's peak resident memory, writes JSON (default bench/results/fuzz.json), and exits 1 if any
answer was a 5xx or a transport error. Also times the text cleaner on pathological 2000-character
texts (the URL regex case). Traffic goes to loopback only.

Issue 20's sources run too (tests/fuzz_round2.py): lone surrogates at every entry, odd form
charsets, batch pixel totals, a follow-up on the same keep-alive connection after every answer
(a dropped connection fails the run), client hang-ups (then /metrics must count no 5xx), and the
gateway's shared result cache in a real redis-server frozen with SIGSTOP (``--no-redis`` to skip).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.launchers.gateway_process import GatewayProcess
from service.text.cleaning import clean_ocr_text
from tests.fuzz_round2 import FrozenCache
from tests.fuzz_runner import FuzzReport, rss_kib, run_fuzz, server_pid
from tests.redis_fixtures import RedisServer

REDIS_ENV = {
    "MEMOTION_RESULT_CACHE": "redis",
    "MEMOTION_RESULT_CACHE_TIMEOUT_S": "0.3",
    "MEMOTION_RESULT_CACHE_BACKOFF_S": "5",
}
TEXT_SHAPES = ("a.", "a-", "a.-", "a_.", "aaaa.", "www.", "@", "|", "a- ", "x.y/")


def worst_cleaning_ms(chars: int = 2000) -> dict[str, float]:
    """Milliseconds the text cleaner takes on each pathological shape repeated to ``chars``."""
    out = {}
    for shape in TEXT_SHAPES:
        text = (shape * (chars // len(shape) + 1))[:chars]
        start = time.perf_counter()
        clean_ocr_text(text)
        out[shape] = round((time.perf_counter() - start) * 1000.0, 2)
    return out


def print_report(report: FuzzReport, cleaning: dict[str, float]) -> None:
    print(f"\n{'endpoint':<36} {'cases':>6} {'worst s':>8}  statuses")
    for name, stats in sorted(report.endpoints.items()):
        statuses = ", ".join(f"{code or 'error'}: {n}" for code, n in sorted(stats.statuses.items()))
        print(f"{name:<36} {stats.cases:>6} {stats.worst_s:>8.3f}  {statuses}")
    print(
        f"\n{report.cases} cases in {report.seconds:.0f} s; 5xx or transport errors: {len(report.server_errors)}; "
        f"worst latency {report.worst_s:.3f} s; server memory {report.rss_before_mib:.0f} MiB before, "
        f"peak {report.peak_rss_mib:.0f} MiB during the run"
    )
    print(f"text cleaning of 2000 pathological characters, worst: {max(cleaning.values()):.1f} ms ({cleaning})")
    for failure in report.server_errors[:20]:
        print("  FAILED:", failure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--examples", type=int, default=300, help="cases per operation and per source")
    parser.add_argument("--ocr", default="none", help="MEMOTION_OCR for the server (default none)")
    parser.add_argument("--seed", type=int, default=0, help="0: the same cases every run; else random")
    parser.add_argument("--timeout", type=float, default=30.0, help="the server's MEMOTION_REQUEST_TIMEOUT_S")
    parser.add_argument("--out", type=Path, default=Path("bench/results/fuzz.json"))
    parser.add_argument("--no-redis", action="store_true", help="no Redis result cache (no frozen-Redis cases)")
    args = parser.parse_args()

    env = {"MEMOTION_OCR": args.ocr, "MEMOTION_REQUEST_TIMEOUT_S": str(args.timeout), "MEMOTION_LOG_LEVEL": "warning"}
    log_path = args.out.with_suffix(".server.log")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        frozen = None
        if not args.no_redis:
            redis = stack.enter_context(RedisServer())
            env.update(REDIS_ENV, MEMOTION_RESULT_CACHE_REDIS_URL=redis.url)
            frozen = FrozenCache(
                redis.frozen,
                float(REDIS_ENV["MEMOTION_RESULT_CACHE_TIMEOUT_S"]),
                float(REDIS_ENV["MEMOTION_RESULT_CACHE_BACKOFF_S"]),
            )
        base_url = stack.enter_context(GatewayProcess(args.repository, env=env, log_path=log_path))
        pid = server_pid(base_url)
        report = run_fuzz(
            base_url,
            pid,
            examples=args.examples,
            timeout_s=args.timeout + 30.0,
            seed=args.seed,
            max_side=6000,
            frozen_cache=frozen,
        )
        peak_lifetime_mib = rss_kib(pid, "VmHWM") / 1024.0
    cleaning = worst_cleaning_ms()
    print_report(report, cleaning)
    result = {
        "machine": platform.platform(),
        "command": " ".join(sys.argv),
        "server_env": env,
        **report.as_dict(),
        "server_peak_rss_lifetime_mib": round(peak_lifetime_mib, 1),
        "text_cleaning_ms": cleaning,
    }
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out} (server log {log_path})")
    return 1 if report.server_errors else 0


if __name__ == "__main__":
    sys.exit(main())
