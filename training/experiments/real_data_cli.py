"""Command-line options of the real-data experiment, shared by ``memotion real-data`` and
``bench/real_data.py`` (which adds the gateway's text-path study)."""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from training.data.real_sets import DATA_SETS

if TYPE_CHECKING:
    from training.experiments.real_data import RealDataConfig

REPO = Path(__file__).resolve().parents[2]


def shared_data_root() -> Path:
    """``$MEMOTION_SHARED_DATA``, else ``<repo>/../shared/data``."""
    return Path(os.environ.get("MEMOTION_SHARED_DATA", REPO.parent / "shared" / "data"))


def add_arguments(parser: argparse.ArgumentParser, default_out: Path | None = None) -> None:
    out_help = "output folder" + (f" (default {default_out})" if default_out else "")
    parser.add_argument("--out", type=Path, default=default_out, required=default_out is None, help=out_help)
    parser.add_argument("--data-root", type=Path, default=shared_data_root(), help="folder with the real sets")
    parser.add_argument("--datasets", nargs="+", default=list(DATA_SETS), choices=list(DATA_SETS))
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1 (one fixed split)")
    parser.add_argument("--max-train", type=int, default=1000, help="cap on training memes (0: all)")
    parser.add_argument("--epochs", type=int, default=3, help="uni-modal, fusion-free CLIP-text epochs")
    parser.add_argument("--multi-epochs", type=int, default=1, help="CLIP-multi epochs (from the uni-modal models)")
    parser.add_argument("--fusion-epochs", type=int, default=3, help="fusion attention and PM+MO epochs")
    parser.add_argument(
        "--paper-multi",
        action="store_true",
        help="CLIP-multi's attention blocks without residual connections, as the paper (they collapse on real "
        "memes: every meme gets the majority class); default: residual + LayerNorm",
    )
    parser.add_argument("--clip", help="open_clip model (default: the tiny random config memotion-tiny)")
    parser.add_argument("--pretrained", default=None, help="open_clip tag or local checkpoint (with --clip)")
    parser.add_argument("--lr", type=float, help="learning rate (tiny default 1e-3, --clip default 2e-5)")
    parser.add_argument("--batch-size", type=int, help="batch size (default 32)")
    parser.add_argument("--workers", type=int, default=2, help="processes running (data set, seed) jobs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--quick", action="store_true", help="a smoke version (minutes)")
    parser.add_argument(
        "--offline",
        action="store_true",
        help="add the offline recipe's rows (its TF-IDF word and character members as ONNX graphs, their ensemble)",
    )
    parser.add_argument("--no-clip", action="store_true", help="leave out the CLIP-based rows (with --offline)")


def config_from_args(args: argparse.Namespace) -> RealDataConfig:
    from training.experiments.real_data import RealDataConfig
    from training.experiments.real_data_models import ModelPlan
    from training.recipe import RecipeConfig, tiny_recipe
    from training.trainer import TrainConfig

    if args.clip:
        recipe = RecipeConfig(clip=args.clip, pretrained=args.pretrained, train=TrainConfig(lr=args.lr or 2e-5))
    else:
        recipe = tiny_recipe()
        if args.lr:
            recipe = replace(recipe, train=replace(recipe.train, lr=args.lr))
    if args.batch_size:
        recipe = replace(recipe, train=replace(recipe.train, batch_size=args.batch_size))
    recipe = replace(recipe, model=replace(recipe.model, residual=not args.paper_multi))
    plan = ModelPlan(
        unimodal_epochs=args.epochs,
        multi_epochs=args.multi_epochs,
        fusion_epochs=args.fusion_epochs,
        out_dir=str(args.out / "runs"),
        clip_models=not getattr(args, "no_clip", False),
        offline=getattr(args, "offline", False),
    )
    config = RealDataConfig(
        data_root=str(args.data_root),
        datasets=tuple(args.datasets),
        seeds=tuple(range(args.seeds)),
        max_train=args.max_train or None,
        plan=plan,
        recipe=recipe,
        workers=args.workers,
        threads=args.threads,
    )
    if args.quick:
        quick_plan = replace(plan, unimodal_epochs=1, multi_epochs=1, fusion_epochs=1, multi_variants=("CLIP-multi",))
        config = replace(config, seeds=(0, 1), max_train=120, plan=quick_plan)
    return config


def missing_data(args: argparse.Namespace) -> list[str]:
    labels = [args.data_root / DATA_SETS[name].labels for name in args.datasets]
    return [str(p) for p in labels if not p.is_file()]


def run(args: argparse.Namespace) -> dict | None:
    """Run the experiment the options describe; None (after saying why) when the data is missing."""
    missing = missing_data(args)
    if missing:
        print(f"real meme data not found ({', '.join(missing)}): set MEMOTION_SHARED_DATA or --data-root")
        return None
    from training.experiments.real_data import run_experiment

    report = run_experiment(args.out, config_from_args(args))
    print((args.out / "real_data.md").read_text())
    return report
