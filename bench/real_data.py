"""Real memes beside honest baselines (issue 15): prints the table, writes JSON, markdown and a PNG.

    python bench/real_data.py                         # tiny random CLIP, sized for a busy 2-core CPU
    python bench/real_data.py --clip ViT-B-32 --pretrained openai --max-train 0 --epochs 10 \\
        --multi-epochs 5 --fusion-epochs 10 --workers 1 --threads 8        # full size, on a GPU

The same experiment as ``memotion real-data``, plus the gateway's Hindi-English text path on
CM-Off-Meme (``--no-text-path`` skips it): what language identification calls the captions, and
TF-IDF + LR with the path's steps on and off. Reads the real memes from ``$MEMOTION_SHARED_DATA``
(default ``<repo>/../shared/data``); the results hold scores and meme ids only, never the memes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.experiments.real_data_cli import add_arguments, config_from_args, run  # noqa: E402

DEFAULT_OUT = ROOT / "bench" / "results" / "real_data"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, DEFAULT_OUT)
    parser.add_argument("--no-text-path", action="store_true", help="skip the Hindi-English text-path study")
    parser.add_argument("--text-path-only", action="store_true", help="only the text-path study (seconds)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    report: dict | None = {}
    if not args.text_path_only:
        report = run(args)
        if report is None:
            return 2
    if not args.no_text_path and "cm-off-meme" in args.datasets:
        from bench.real_data_text_path import run_text_path_study

        args.out.mkdir(parents=True, exist_ok=True)
        study = run_text_path_study(config_from_args(args), args.out)
        print((args.out / "text_path.md").read_text())
        if not args.text_path_only:
            report["text_path"] = study
    if not args.text_path_only:
        report["total_seconds"] = round(time.perf_counter() - started, 1)
        (args.out / "real_data.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {args.out} in {(time.perf_counter() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
