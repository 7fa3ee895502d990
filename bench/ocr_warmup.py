"""The OCR warm-up at gateway start-up (``MEMOTION_OCR_WARMUP``) on OpenVINO, on and off, side by side.

    python bench/ocr_warmup.py --workdir /tmp/memotion-production-size --repository fp32

``--workdir``: what ``bench/production_size.py`` leaves. Per turn, one fresh gateway (the
``--repository`` served with MEMOTION_ENGINE=openvino, MEMOTION_OPENVINO_PRECISION=bf16) with the
warm-up on or off, the two alternating (``--rounds`` turns each): seconds until ready, then one
client posting ``--memes`` real CM-Off-Meme memes one after another (text read by OCR): the first
pass, every OCR input shape new to the gateway but for the warmed ones, and a second pass over the
same memes (every shape seen). For each pass: mean and p99 ms per meme and the OCR stage's mean
(the gateway's ``memotion_stage_seconds``). Prints a table, writes JSON (default
bench/results/ocr_warmup.json). The machine is shared: compare on with off within one run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.production_size import log, ocr_memes, stage_ms, stage_seconds, start_gateway, table  # noqa: E402

DEFAULT_OUT = ROOT / "bench" / "results" / "ocr_warmup.json"
COLUMNS = (  # header, width, row key, format
    ("warm-up", 8, "warmup", ""),
    ("round", 6, "round", ""),
    ("ready s", 8, "ready_s", ".2f"),
    ("pass", 7, "pass", ""),
    ("mean ms", 8, "mean_ms", ".0f"),
    ("p99 ms", 8, "p99_ms", ".0f"),
    ("OCR ms", 8, "ocr_ms", ".0f"),
)


def one_pass(url: str, payloads: list[bytes]) -> dict:
    """The memes posted one after another: mean and p99 ms per meme, the OCR stage's mean."""
    before, latencies = stage_seconds(url), []
    with httpx.Client(base_url=url, timeout=120) as http:
        for payload in payloads:
            started = time.perf_counter()
            response = http.post("/v1/classify", files={"image": ("meme.jpg", payload)})
            response.raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
    stages = stage_ms(before, stage_seconds(url))
    return {"mean_ms": float(np.mean(latencies)), "p99_ms": float(np.percentile(latencies, 99)),
            "ocr_ms": stages.get("ocr", float("nan"))}  # fmt: skip


def turn(repository: Path, warmup: str, payloads: list[bytes]) -> list[dict]:
    env = {"MEMOTION_ENGINE": "openvino", "MEMOTION_OPENVINO_PRECISION": "bf16", "MEMOTION_OCR_WARMUP": warmup}
    gateway, start = start_gateway(repository, env)
    try:
        url = gateway.base_url  # type: ignore[attr-defined]
        rows = [{"pass": name, **one_pass(url, payloads)} for name in ("first", "second")]
        warmed = [line for line in gateway.log_text().splitlines() if "OCR warmed up" in line]  # type: ignore[attr-defined]
    finally:
        gateway.stop()  # type: ignore[attr-defined]
    return [{"warmup": warmup, "ready_s": start["ready_s"], "log": warmed[-1:], **row} for row in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/memotion-production-size"))
    parser.add_argument("--repository", default="fp32", help="the --workdir folder served (fp32, int8, ...)")
    parser.add_argument("--memes", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    payloads = ocr_memes(args.memes)
    rows = []
    for index in range(args.rounds):
        for warmup in ("off", "on") if index % 2 == 0 else ("on", "off"):
            rows += [{"round": index + 1, **row} for row in turn(args.workdir / args.repository, warmup, payloads)]
            log(f"round {index + 1}, warm-up {warmup}: {rows[-2]['mean_ms']:.0f} then {rows[-1]['mean_ms']:.0f} ms")
    print(table(rows, COLUMNS))
    for warmup in ("off", "on"):
        first = [r for r in rows if r["warmup"] == warmup and r["pass"] == "first"]
        ready, mean, ocr = (np.mean([r[key] for r in first]) for key in ("ready_s", "mean_ms", "ocr_ms"))
        print(f"warm-up {warmup}: ready {ready:.2f} s, first pass {mean:.0f} ms/meme, OCR {ocr:.0f} ms")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
