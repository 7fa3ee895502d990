"""The members' own speed at the paper's size (issue 21), repositories side by side in one run.

    python bench/member_speed.py --run RUN --repository fp32=DIR --repository int8=DIR [--val CSV]

RUN: a `memotion train --clip ViT-B-32` run (its checkpoints give the FLOP counts); each
``--repository name=DIR`` an export of it (the first is the reference: FP32). Steps: (1) this
machine's matmul roofline (bench/roofline.py, same run); (2) per member and repository, on the first
8 real memes of ``--val`` (captions given): ms per meme at batch 8 with ``input_ids`` at the full
context length and cut to the batch's longest text (where the manifest's ``token_trimming``
allows it; the gateway does the same), GFLOP per meme at each length (PyTorch's count) and the
fraction of the roofline in the repository's precision; (3) each other repository's ensemble vote
against the reference's on every ``--val`` meme: label agreement per head and macro F1 of both.
Prints a table, writes JSON (default bench/results/member_speed.json). The machine is shared:
compare the repositories within one run (ratios), not with other runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.production_size import log, memes_and_feeds, ms_per_meme, table, vote_quality  # noqa: E402
from bench.roofline import cpu_flags, measure_roofline  # noqa: E402
from memotion.data_format import load_split  # noqa: E402
from memotion.manifest import ModelEntry, load_manifest  # noqa: E402
from memotion.tokenizer import trim_token_ids  # noqa: E402

DEFAULT_OUT = ROOT / "bench" / "results" / "member_speed.json"
DEFAULT_VAL = ROOT.parent / "shared" / "data" / "memotion1-train-128px" / "labels.csv"
BATCH = 8
COLUMNS = (  # header, width, row key, format
    ("member", 12, "member", ""),
    ("repository", 18, "repository", ""),
    ("prec", 6, "precision", ""),
    ("tokens", 7, "tokens", ""),
    ("GFLOP", 7, "gflop_per_meme", ".2f"),
    ("ms/meme", 8, "ms_per_meme", ".1f"),
    ("GFLOP/s", 8, "achieved_gflops", ".0f"),
    ("roof", 7, "roofline_fraction", ".1%"),
    ("vs ref", 7, "speedup_vs_reference_full", ".2f"),
)


def gflop_per_meme(run: Path, member: ModelEntry, feed: dict[str, np.ndarray]) -> float:
    """GFLOP per meme of ``member``'s PyTorch model on ``feed`` (a batch), as PyTorch counts them."""
    import torch

    from training.compute import count_flops
    from training.factory import load_checkpoint

    model, _ = load_checkpoint(run / member.name / "checkpoint.pt")
    args = [torch.from_numpy(feed[name]) for name in member.inputs]
    with torch.no_grad():
        flops = count_flops(lambda: model(*args))
    return flops / 1e9 / len(args[0])


def length_feeds(member: ModelEntry, feeds: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """The first BATCH memes' inputs at the full token length and, where allowed, cut to the longest."""
    batch = {name: np.ascontiguousarray(feeds[name][:BATCH]) for name in member.inputs}
    variants = {"full": batch}
    if member.token_trimming is not None:
        variants["trimmed"] = {**batch, "input_ids": np.ascontiguousarray(trim_token_ids(batch["input_ids"]))}
    return variants


def member_rows(
    run: Path, repositories: dict[str, Path], feeds: dict[str, np.ndarray], roofline: dict, seconds: float
) -> list[dict]:
    rows = []
    reference = next(iter(repositories.values()))
    for member in load_manifest(reference).members():
        for length, feed in length_feeds(member, feeds).items():
            gflop = gflop_per_meme(run, member, feed)
            for name, repository in repositories.items():
                entry = load_manifest(repository).model(member.name)
                precision = entry.quantization.precision if entry.quantization else "fp32"
                ms = ms_per_meme(repository / entry.file, entry, feed, seconds, batch=BATCH)
                rows.append(
                    {
                        "member": member.name, "repository": name, "precision": precision,
                        "tokens": feed["input_ids"].shape[1] if "input_ids" in feed else "-", "length": length,
                        "gflop_per_meme": gflop, "ms_per_meme": ms, "achieved_gflops": gflop / (ms / 1000),
                        "roofline_fraction": gflop / (ms / 1000) / roofline["best"][precision],
                    }
                )  # fmt: skip
                log(f"{member.name} {name} {length}: {ms:.1f} ms/meme at batch {BATCH}")
    for row in rows:  # against the reference repository at the full length, same member
        base = next(r for r in rows if r["member"] == row["member"] and r["length"] == "full")
        row["speedup_vs_reference_full"] = base["ms_per_meme"] / row["ms_per_meme"]
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="the training run the repositories were exported from")
    parser.add_argument("--repository", action="append", required=True, help="name=DIR; the first is the reference")
    parser.add_argument("--val", type=Path, default=DEFAULT_VAL, help="real memes (labels.csv / val.csv)")
    parser.add_argument("--memes", type=int, default=64, help="memes of --val for the agreement")
    parser.add_argument("--seconds", type=float, default=6.0, help="timing per member, repository and length")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    repositories = {name: Path(path) for name, path in (r.split("=", 1) for r in args.repository)}
    reference = next(iter(repositories.values()))
    records = load_split(args.val)[: args.memes]
    feeds = memes_and_feeds(load_manifest(reference), reference, records)
    report: dict = {"cpu_flags": cpu_flags(), "args": {k: str(v) for k, v in vars(args).items()}}
    log("matmul roofline")
    report["roofline_gflops"] = measure_roofline(1024, 2.0, 2)
    report["members"] = member_rows(args.run, repositories, feeds, report["roofline_gflops"], args.seconds)
    report["quality"] = {
        name: vote_quality(reference, path, records, feeds) for name, path in list(repositories.items())[1:]
    }
    roof = report["roofline_gflops"]["best"]
    print(f"\nroofline, 2 threads, best engine (GFLOP/s): {', '.join(f'{k} {v:.0f}' for k, v in roof.items())}")
    print(table(report["members"], COLUMNS))
    for name, q in report["quality"].items():
        print(
            f"{name} vs {next(iter(repositories))} on {q['memes']} real memes: min label agreement "
            f"{q['min_agreement']:.1%}, max macro F1 difference {q['max_macro_f1_diff']:.3f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
