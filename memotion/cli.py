"""The `memotion` command line: one entry point, a subcommand per job.

Heavy imports (torch, open_clip, onnxruntime, FastAPI) happen inside each subcommand, so
`memotion --help` is instant and `memotion serve` never imports the training code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

DESCRIPTION = """\
memotion reads a meme (image + the text printed on it) and says how it feels:
  Task A  sentiment: negative / neutral / positive
  Task B  emotions present: humorous, sarcastic, offensive, motivational
  Task C  their intensity: humour NF/F/VF/H, sarcasm NS/LS/VS/ES, offense NO/S/VO/HO, motivation NM/M

Typical flow:  make-synthetic-data -> train -> export -> serve -> classify.
`memotion demo` runs all of it end to end with tiny models on synthetic memes."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _gb_weights(text: str) -> dict[str, float]:
    try:
        pairs = dict(item.split("=", 1) for item in text.split(","))
        weights = {name.strip(): float(value) for name, value in pairs.items()}
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected text=W,image=W,multi=W, got {text!r}") from err
    if set(weights) != {"text", "image", "multi"}:
        raise argparse.ArgumentTypeError("gradient-blending weights need text, image and multi")
    return weights


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memotion", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="end to end: synthetic data -> train tiny models -> export -> serve -> classify",
        description="Generate synthetic memes, train tiny CLIP models on them, export the model "
        "repository, start the HTTP gateway on loopback, classify three memes over HTTP and print "
        "the answers and the validation F1. The models are tiny and random-initialised: the demo "
        "shows the system working, not a useful classifier.",
    )
    demo.add_argument("--workdir", type=Path, default=Path("demo-run"),
                      help="where data, checkpoints and logs go (default: ./demo-run)")
    demo.add_argument("--repository", type=Path, default=Path("model_repository"),
                      help="where the exported model repository goes (default: ./model_repository)")
    demo.add_argument("--train", type=_positive_int, default=1200, help="synthetic training memes")
    demo.add_argument("--val", type=_positive_int, default=300, help="synthetic validation memes")
    demo.add_argument("--epochs", type=_positive_int, default=8, help="training epochs per model")
    demo.add_argument("--port", type=int, default=0, help="gateway port (default: a free one)")
    demo.add_argument("--seed", type=int, default=0)

    synth = commands.add_parser(
        "make-synthetic-data", help="render a synthetic Memotion-format meme data set",
        description="Render meme-like images (picture + white outlined caption, English and "
        "romanised Hindi) whose labels depend on both the caption and the picture, and write "
        "train.csv / val.csv (Memotion 3 format) with image/{train,val}/*.jpg.",
    )
    synth.add_argument("--out", type=Path, required=True, help="output directory")
    synth.add_argument("--train", type=_positive_int, default=600, help="training memes")
    synth.add_argument("--val", type=_positive_int, default=200, help="validation memes")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--image-size", type=_positive_int, default=256, help="pixels per side")
    synth.add_argument("--dominant", choices=["none", "text", "image"], default="none",
                       help="make one modality carry (almost) all label information")

    train = commands.add_parser(
        "train", help="train CLIP-text, CLIP-image and CLIP-multi on a Memotion-format data set",
        description="Train the paper's models (CLIP-text with BiLSTM, CLIP-image, CLIP-multi with "
        "6 attention blocks and gradient blending) on DATA/train.csv, validate on DATA/val.csv, and "
        "write checkpoints, training curves, confusion matrices and summary.json into --out.",
    )
    train.add_argument("--data", type=Path, required=True, help="folder with train.csv and val.csv")
    train.add_argument("--out", type=Path, required=True, help="run directory to write")
    train.add_argument("--tiny", action="store_true",
                       help="tiny random-initialised CLIP preset (seconds on a CPU; tests, demo)")
    train.add_argument("--clip", default=None, help="open_clip model name (default ViT-B-32)")
    train.add_argument("--pretrained", default=None,
                       help="open_clip pretrained tag (e.g. openai), a local checkpoint path, or "
                       "'none' for random weights (default: openai)")
    train.add_argument("--models", default="clip_text,clip_image,clip_multi",
                       help="comma-separated subset of clip_text,clip_image,clip_multi")
    train.add_argument("--epochs", type=_positive_int)
    train.add_argument("--batch-size", type=_positive_int)
    train.add_argument("--lr", type=float)
    train.add_argument("--weight-decay", type=float)
    train.add_argument("--focal-gamma", type=float, help="focal loss gamma for Task C heads")
    train.add_argument("--focal-alpha", action="store_true",
                       help="per-class focal alpha from class frequencies")
    train.add_argument("--gb-weights", type=_gb_weights,
                       help="gradient blending weights, e.g. text=0.2,image=0.4,multi=0.4")
    train.add_argument("--max-steps", type=_positive_int, help="stop after this many steps")
    train.add_argument("--seed", type=int)
    train.add_argument("--threads", type=_positive_int, help="torch CPU threads")

    export = commands.add_parser(
        "export", help="export a training run to a model repository (ONNX + manifest)",
        description="Export every model of a `memotion train` run to ONNX (opset 17, dynamic "
        "batch), check each against PyTorch with ONNX Runtime, and write tokenizer and "
        "manifest.json. The gateway reads only this repository.",
    )
    export.add_argument("--run", type=Path, required=True, help="run directory of `memotion train`")
    export.add_argument("--out", type=Path, default=Path("model_repository"),
                        help="model repository to write (default: ./model_repository)")
    export.add_argument("--version", type=_positive_int, default=1, help="model version number")

    serve = commands.add_parser(
        "serve", help="run the HTTP gateway (FastAPI + uvicorn)",
        description="Serve POST /v1/classify, /healthz, /readyz and /metrics. Every option can "
        "also be set with an environment variable MEMOTION_<OPTION> (e.g. MEMOTION_PORT).",
    )
    serve.add_argument("--repository", type=Path, help="model repository (default ./model_repository)")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--backend", choices=["onnxruntime", "triton"],
                       help="inference backend (default: onnxruntime, in-process)")
    serve.add_argument("--ocr", choices=["easyocr", "none"], help="OCR engine (default easyocr)")

    classify = commands.add_parser(
        "classify", help="classify meme image files and print JSON",
        description="Classify each FILE, in-process from --repository, or through a running "
        "gateway with --url. Without --text the printed text is read with OCR.",
    )
    classify.add_argument("files", type=Path, nargs="+", metavar="FILE")
    classify.add_argument("--text", help="the meme's text (skips OCR)")
    classify.add_argument("--url", help="gateway base URL, e.g. http://127.0.0.1:8000")
    classify.add_argument("--repository", type=Path, help="model repository (in-process mode)")
    return parser


def _train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from training.recipe import RecipeConfig, tiny_recipe, train_recipe

    config = tiny_recipe() if args.tiny else RecipeConfig()
    overrides = {k: v for k, v in {
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "weight_decay": args.weight_decay, "focal_gamma": args.focal_gamma,
        "gb_weights": args.gb_weights, "max_steps": args.max_steps, "seed": args.seed,
    }.items() if v is not None}
    if args.focal_alpha:
        overrides["focal_alpha"] = True
    config = replace(
        config,
        clip=args.clip or config.clip,
        pretrained=args.pretrained if args.pretrained is not None else config.pretrained,
        models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
        train=replace(config.train, **overrides),
        threads=args.threads,
    )
    results = train_recipe(args.data, args.out, config)
    for kind, result in results.items():
        print(f"{kind}: best epoch {result.best_epoch}, validation " + json.dumps(
            {k: round(v, 4) for k, v in result.scores.items() if k in ("task_a", "task_b", "task_c")}))
    print(f"run written to {args.out}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from service.main import serve
    from service.settings import GatewaySettings

    overrides = {k: v for k, v in {
        "model_repository": args.repository, "host": args.host, "port": args.port,
        "backend": args.backend, "ocr": args.ocr,
    }.items() if v is not None}
    serve(GatewaySettings(**overrides))
    return 0


def _classify(args: argparse.Namespace) -> int:
    from service.classify_cli import classify_file
    from service.settings import GatewaySettings

    settings = None
    if args.url is None:
        settings = GatewaySettings(**({"model_repository": args.repository} if args.repository else {}))
    for path in args.files:
        result = classify_file(path, text=args.text, url=args.url, settings=settings)
        print(json.dumps({"file": str(path), **result}, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        # Bad paths, bad data, unusable repositories: one clear line, no traceback.
        print(f"memotion {args.command}: error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from memotion.demo import DemoConfig, run_demo

        return run_demo(DemoConfig(workdir=args.workdir, repository=args.repository,
                                   n_train=args.train, n_val=args.val, epochs=args.epochs,
                                   port=args.port, seed=args.seed))
    if args.command == "make-synthetic-data":
        from training.data.synthetic import SyntheticConfig, make_synthetic_dataset

        paths = make_synthetic_dataset(args.out, SyntheticConfig(
            n_train=args.train, n_val=args.val, seed=args.seed, image_size=args.image_size,
            dominant=args.dominant), progress=True)
        print("wrote " + ", ".join(str(p) for p in paths.values()))
        return 0
    if args.command == "train":
        return _train(args)
    if args.command == "export":
        from training.export import export_run

        export_run(args.run, args.out, version=args.version, log=print)
        print(f"model repository written to {args.out}")
        return 0
    if args.command == "serve":
        return _serve(args)
    if args.command == "classify":
        return _classify(args)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
