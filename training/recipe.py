"""The training recipe: CLIP-text and CLIP-image, then CLIP-multi initialised from them (paper Sec. 4).

Writes a run directory: ``<model>/checkpoint.pt`` (+ history, curves, confusion matrices) per model
and ``summary.json`` (validation weighted F1 per model and for the majority-vote ensemble), which
``memotion export`` turns into a model repository.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import open_clip
import torch

from memotion.labels import ALL_TASKS
from memotion.manifest import OPENAI_MEAN, OPENAI_STD, Preprocessing
from memotion.voting import majority_vote
from training.backbone import (TINY_CLIP, clip_context_length, clip_image_size, create_clip,
                               normalise_pretrained, register_model_configs)
from training.data.memotion_format import load_split
from training.dataset import build_tensors
from training.factory import MODEL_KINDS, MODEL_REGISTRY, ModelConfig, build_model, build_multi, build_unimodal
from training.metrics import memotion_scores
from training.trainer import TrainConfig, TrainResult, train_model

SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class RecipeConfig:
    clip: str = "ViT-B-32"
    pretrained: str | None = "openai"
    models: tuple[str, ...] = MODEL_KINDS
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    threads: int | None = None


def tiny_recipe(epochs: int = 8, max_steps: int | None = None, seed: int = 0) -> RecipeConfig:
    """Tiny random-initialised CLIP for tests and the demo: trains in seconds on a CPU."""
    return RecipeConfig(
        clip=TINY_CLIP, pretrained=None,
        model=ModelConfig(lstm_hidden=64, head_hidden=64, attention_heads=4),
        train=TrainConfig(epochs=epochs, batch_size=32, lr=1e-3, weight_decay=1e-2,
                          max_steps=max_steps, seed=seed),
    )


def preprocessing_for(clip: torch.nn.Module) -> Preprocessing:
    mean = getattr(clip.visual, "image_mean", None) or OPENAI_MEAN
    std = getattr(clip.visual, "image_std", None) or OPENAI_STD
    return Preprocessing(image_size=clip_image_size(clip), mean=tuple(mean), std=tuple(std))


def ensemble_scores(
    probabilities: dict[str, dict[str, np.ndarray]], y_true: dict[str, np.ndarray]
) -> dict[str, float]:
    """Validation weighted F1 of the majority vote over all models (paper Sec. 5)."""
    voted = {t.name: majority_vote([p[t.name] for p in probabilities.values()]) for t in ALL_TASKS}
    return memotion_scores(y_true, voted)


def train_recipe(
    data_dir: Path, run_dir: Path, config: RecipeConfig, progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, TrainResult]:
    """Train every model in ``config.models`` on ``data_dir/{train,val}.csv``; write ``run_dir``."""
    if config.threads:
        torch.set_num_threads(config.threads)
    unknown = set(config.models) - set(MODEL_REGISTRY)
    if unknown:
        raise ValueError(f"unknown model kinds {sorted(unknown)}; choose from {sorted(MODEL_REGISTRY)}")
    train_records = load_split(data_dir / "train.csv")
    val_records = load_split(data_dir / "val.csv")
    log(f"data: {len(train_records)} train / {len(val_records)} val memes from {data_dir}")
    register_model_configs()
    torch.manual_seed(config.train.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    pretrained = normalise_pretrained(config.pretrained)
    probe = create_clip(config.clip, pretrained)
    preprocessing = preprocessing_for(probe)
    context_length = clip_context_length(probe)
    tokenize = open_clip.get_tokenizer(config.clip, context_length=context_length)
    train = build_tensors(train_records, tokenize, preprocessing, progress, "preprocess train")
    val = build_tensors(val_records, tokenize, preprocessing, progress, "preprocess val")

    results: dict[str, TrainResult] = {}
    started = time.perf_counter()
    for kind in ("clip_text", "clip_image"):
        needed_by_multi = "clip_multi" in config.models
        if kind not in config.models and not needed_by_multi:
            continue
        clip = probe if kind == "clip_text" else create_clip(config.clip, pretrained)
        model = build_unimodal(kind, clip, config.model)
        results[kind] = train_model(model, kind, train, val, config.train, run_dir / kind,
                                    config.clip, config.model, progress, log)
    if "clip_multi" in config.models:
        multi = build_multi(results["clip_text"].model, results["clip_image"].model, config.model)
        results["clip_multi"] = train_model(multi, "clip_multi", train, val, config.train,
                                            run_dir / "clip_multi", config.clip, config.model,
                                            progress, log)
    for kind in config.models:
        if kind not in MODEL_KINDS:  # any other registered kind trains from a fresh backbone
            model = build_model(kind, config.clip, config.model, pretrained)
            results[kind] = train_model(model, kind, train, val, config.train, run_dir / kind,
                                        config.clip, config.model, progress, log)
    results = {kind: results[kind] for kind in config.models}
    members = {kind: r.val_probabilities for kind, r in results.items()}
    summary = {
        "clip": config.clip,
        "pretrained": pretrained,
        "context_length": context_length,
        "preprocessing": preprocessing.model_dump(mode="json"),
        "data": {"dir": str(data_dir), "train": len(train_records), "val": len(val_records)},
        "recipe": asdict(replace(config, pretrained=pretrained)),
        "models": {kind: {"checkpoint": f"{kind}/checkpoint.pt", "best_epoch": r.best_epoch,
                          "seconds": round(r.seconds, 2), "validation": r.scores}
                   for kind, r in results.items()},
        "ensemble": {"members": list(results),
                     "validation": ensemble_scores(members, val.target_columns())},
        "seconds": round(time.perf_counter() - started, 2),
    }
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return results


def read_summary(run_dir: Path) -> dict:
    path = run_dir / SUMMARY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a `memotion train` run directory?")
    return json.loads(path.read_text())
