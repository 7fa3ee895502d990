"""The ``memotion score`` and ``memotion api-key`` subcommands (parsers and handlers; heavy imports
happen inside the handlers so ``memotion --help`` stays instant)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_parsers(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    score = commands.add_parser(
        "score", help="classify a folder, CSV or Memotion data set into results.jsonl / .parquet (resumable)",
        description="Classify every meme of INPUT (a folder of images, a CSV/TSV/JSONL with an image "
        "column and optional id and text columns, or a Memotion-format data set folder) and write one "
        "record per meme to --out (.jsonl or .parquet). Run it again after a crash or kill: memes already "
        "in --out are skipped, none is scored twice or lost. --ray ADDRESS runs it on a Ray cluster "
        "('local' starts one on this machine).",
    )
    score.add_argument("input", type=Path, metavar="INPUT")
    score.add_argument("--out", type=Path, required=True, help="results file: .jsonl or .parquet")
    score.add_argument("--repository", type=Path, help="model repository (default ./model_repository)")
    score.add_argument("--ocr", choices=["easyocr", "none"], help="OCR engine for memes without text")
    score.add_argument("--ignore-text", action="store_true",
                       help="read every meme's text with OCR even when INPUT gives one")
    score.add_argument("--chunk-size", type=_positive_int, default=16, help="memes per model call (default 16)")
    score.add_argument("--ray", metavar="ADDRESS", help="run on Ray: 'local', 'auto' or ray://host:port")
    score.add_argument("--ray-actors", type=_positive_int, default=2, help="scoring actors on Ray (default 2)")
    score.add_argument("--no-progress", action="store_true", help="no progress bar")

    key = commands.add_parser(
        "api-key", help="make a new gateway API key and print its configuration entry",
        description="Print a new random API key (give it to the client) and the entry to add to "
        "MEMOTION_API_KEYS or the MEMOTION_API_KEYS_FILE list, which holds only the key's SHA-256.",
    )
    key.add_argument("--name", required=True, help="the client's name (logged; labels its rate limit)")
    key.add_argument("--rate-per-minute", type=float, help="this key's limit in memes per minute")
    key.add_argument("--burst", type=_positive_int, help="this key's burst size")


def run_score(args: argparse.Namespace) -> int:
    from service.scoring import score
    from service.settings import GatewaySettings

    overrides = {k: v for k, v in {"model_repository": args.repository, "ocr": args.ocr}.items() if v is not None}
    summary = score(args.input, args.out, GatewaySettings(**overrides), chunk_size=args.chunk_size,
                    ignore_text=args.ignore_text, ray_address=args.ray, ray_actors=args.ray_actors,
                    progress=not args.no_progress)
    print(summary.line())
    return 0


def run_api_key(args: argparse.Namespace) -> int:
    from service.auth import ApiKeyEntry, hash_key, new_key

    key = new_key()
    entry = ApiKeyEntry(name=args.name, sha256=hash_key(key), rate_per_minute=args.rate_per_minute, burst=args.burst)
    print(f"key (give it to {args.name}; it is not stored anywhere): {key}", file=sys.stderr)
    print(json.dumps(entry.model_dump(exclude_none=True)))
    return 0
