"""The training recipe: CLIP-text and CLIP-image, then CLIP-multi initialised from them (paper Sec. 4),
then the majority-vote ensemble searched over all model combinations on validation (Sec. 5).

Writes a run directory: ``<model>/checkpoint.pt`` (+ history, curves, confusion matrices) per model
and ``summary.json`` (validation weighted F1 per model and for the ensemble, whose per-head voters
``memotion export`` writes into the manifest), which ``memotion export`` turns into a model repository.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import open_clip
import torch

from memotion.data_format import load_split
from memotion.labels import TASK_A
from memotion.manifest import OPENAI_MEAN, OPENAI_STD, Preprocessing
from training.backbone import (
    TINY_CLIP,
    clip_context_length,
    clip_image_size,
    create_clip,
    normalise_pretrained,
    register_model_configs,
)
from training.baselines import TfidfConfig
from training.compute import matmul_rate
from training.cost_estimate import (
    TrainingCost,
    available_memory_bytes,
    clip_towers,
    encoder_tower,
    fit_batch_size,
    training_cost,
)
from training.dataset import MemeTensors, build_tensors
from training.ensemble_combination import search_combination
from training.ensemble_evidence import selection_warnings
from training.ensemble_search import (
    EnsembleSelection,
    Objective,
    TaskBMode,
    all_members,
    ensemble_scores,
    search_ensemble,
)
from training.factory import (
    MODEL_KINDS,
    MODEL_REGISTRY,
    KindData,
    ModelConfig,
    build_model,
    build_multi,
    build_unimodal,
    model_kind,
)
from training.oscar.config import OscarConfig, tiny_oscar_config
from training.pretrained_text.config import TextEncoderConfig
from training.tfidf_member import CHAR_TFIDF, MEMBER_TFIDF, NB_TFIDF
from training.trainer import TrainConfig, TrainResult, train_model
from training.warm_start import warm_start

SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class RecipeConfig:
    clip: str = "ViT-B-32"
    pretrained: str | None = "openai"
    models: tuple[str, ...] = MODEL_KINDS
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    threads: int | None = None
    # The ensemble: exhaustive search over model combinations per head on validation (the paper),
    # or every model votes on everything; Task B from the voted Task C label or voted directly.
    ensemble_search: bool = True
    task_b: TaskBMode = "from_task_c"
    # The F1 the search maximises on validation, and the combination rules it may choose per head
    # (training/ensemble_combination.py; the paper: majority vote only, weighted F1).
    ensemble_objective: Objective = "weighted_f1"
    ensemble_rules: tuple[str, ...] = ("majority_vote",)
    # Staged schedule (training/schedule.py): a pretrainuni run directory whose
    # <kind>/checkpoint.pt bodies initialise CLIP-text / CLIP-image (heads start fresh).
    init_from: str | None = None
    # OSCAR's options (--models oscar): BERT checkpoint, region detector (training/oscar/config.py).
    oscar: OscarConfig = field(default_factory=OscarConfig)
    # bert_text's options (--models bert_text): encoder folder and hash, max length, fine-tuning.
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    # tfidf_lr's options (--models tfidf_lr): n-grams, the C grid and class weights it searches;
    # tfidf_char's (--models tfidf_char): the same for character n-grams.
    tfidf: TfidfConfig = field(default_factory=lambda: MEMBER_TFIDF)
    tfidf_char: TfidfConfig = field(default_factory=lambda: CHAR_TFIDF)
    tfidf_nb: TfidfConfig = field(default_factory=lambda: NB_TFIDF)
    # Without the search: a kind named here votes only on these heads (kind -> heads), every other
    # kind on every head. The offline recipe's tfidf_nb votes on Task A only.
    member_heads: dict[str, tuple[str, ...]] = field(default_factory=dict)


def tiny_recipe(epochs: int = 8, max_steps: int | None = None, seed: int = 0) -> RecipeConfig:
    """Tiny random-initialised CLIP for tests and the demo: trains in seconds on a CPU."""
    return RecipeConfig(
        clip=TINY_CLIP,
        pretrained=None,
        model=ModelConfig(lstm_hidden=64, head_hidden=64, attention_heads=4),
        train=TrainConfig(epochs=epochs, batch_size=32, lr=1e-3, weight_decay=1e-2, max_steps=max_steps, seed=seed),
        oscar=tiny_oscar_config(),
    )


def offline_recipe(epochs: int = 2, seed: int = 0) -> RecipeConfig:
    """``memotion train --recipe offline``: what a 2-core CPU fits in minutes without a download
    (issue 23; on the real sets it matches TF-IDF + LR: README "The offline recipe"). Three members,
    TF-IDF n-grams served as ONNX graphs with a string input (training/tfidf_member.py): logistic
    regressions on word 1-2 grams (``tfidf_lr``) and character 2-5 grams (``tfidf_char``), and NB-LR
    on the word n-grams (``tfidf_nb``, training/nb_lr.py), each head's C and class weighting chosen
    on validation by macro F1. Task A is the equal-weight mean of the three members' probabilities,
    every other head the mean of the word and character members' (no search on validation: chosen
    by cross-fitted scores on the training memes, where searched subsets, weights, offsets and
    stackers did not help; bench/offline_task_a_oof.py for Task A). The pretrained MiniLM member
    (``bert_text``, its options kept here: top 3 of 6 layers at 1e-4, heads at 1e-3, 48 tokens,
    ``epochs``) can join with ``--models tfidf_lr,tfidf_char,tfidf_nb,bert_text``. The tiny CLIP is
    only there for the shared tensors (no CLIP model is trained)."""
    return RecipeConfig(
        clip=TINY_CLIP,
        pretrained=None,
        models=("tfidf_lr", "tfidf_char", "tfidf_nb"),
        member_heads={"tfidf_nb": (TASK_A.name,)},
        model=ModelConfig(lstm_hidden=128, head_hidden=256),
        train=TrainConfig(
            epochs=epochs,
            batch_size=32,
            lr=1e-3,
            weight_decay=1e-2,
            focal_alpha=True,
            task_a_balanced=True,
            seed=seed,
        ),
        text_encoder=TextEncoderConfig(max_length=48, trainable_layers=3, encoder_lr=1e-4),
        ensemble_search=False,
        ensemble_objective="macro_f1",
        ensemble_rules=("mean_probability",),
    )


def preprocessing_for(clip: torch.nn.Module) -> Preprocessing:
    mean = getattr(clip.visual, "image_mean", None) or OPENAI_MEAN
    std = getattr(clip.visual, "image_std", None) or OPENAI_STD
    return Preprocessing(image_size=clip_image_size(clip), mean=tuple(mean), std=tuple(std))


def everyone_rule(rules: tuple[str, ...]) -> str:
    """The rule every model votes by when there is no search: ``mean_probability`` when that is the
    only rule asked for, else the paper's majority vote."""
    return "mean_probability" if tuple(rules) == ("mean_probability",) else "majority_vote"


def plain_selection(
    models: list[str], task_b: TaskBMode, rules: tuple[str, ...], member_heads: Mapping[str, tuple[str, ...]]
) -> EnsembleSelection:
    """No search: every model votes on every head by the one plain rule (``everyone_rule``), except
    that a kind of ``member_heads`` votes only on its heads (a head it would leave empty keeps it)."""
    selection = all_members(models, task_b, everyone_rule(rules))
    for head, voters in selection.task_members.items():
        kept = tuple(m for m in voters if head in member_heads.get(m, (head,)))
        selection.task_members[head] = kept or voters
    return selection


def ensemble_summary(
    probabilities: dict[str, dict[str, np.ndarray]],
    y_true: dict[str, np.ndarray],
    search: bool = True,
    task_b: TaskBMode = "from_task_c",
    objective: Objective = "weighted_f1",
    rules: tuple[str, ...] = ("majority_vote",),
    member_heads: Mapping[str, tuple[str, ...]] | None = None,
) -> dict:
    """The ensemble's voters (and combination rule) per head and its validation weighted F1 (paper Sec. 5).

    ``validation`` is measured on the split the search chose the voters on, so it is optimistic
    (the paper's Table 4 reports it the same way); ``validation_all_members`` is every model voting.
    """
    everyone = all_members(list(probabilities), task_b)
    if not search:  # every model votes (member_heads' on theirs), by the one plain rule (majority vote by default)
        selection = replace(
            plain_selection(list(probabilities), task_b, rules, member_heads or {}), objective=objective
        )
    elif tuple(rules) == ("majority_vote",):
        selection = search_ensemble(probabilities, y_true, task_b, objective)
    else:
        selection = search_combination(probabilities, y_true, objective, rules, task_b)
    return {
        **selection.to_json(),
        # Only a search picks voters on validation (a fixed member_heads choice is not the search's).
        "warnings": selection_warnings(
            probabilities,
            y_true,
            selection.task_members,
            selection.task_rules,
            selection.task_weights,
            objective,
            selection.task_offsets,
        )
        if search
        else [],
        "validation": ensemble_scores(probabilities, y_true, selection),
        "validation_all_members": ensemble_scores(probabilities, y_true, everyone),
    }


@dataclass
class PreparedData:
    """A data set's splits as tensors, with what the models and the export need to know."""

    train: MemeTensors
    val: MemeTensors
    preprocessing: Preprocessing
    context_length: int
    pretrained: str | None
    probe: torch.nn.Module  # the first CLIP created (CLIP-text trains on it)
    tokenize: Callable


def prepare_data(
    data_dir: Path,
    config: RecipeConfig,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> PreparedData:
    """Read ``data_dir/{train,val}.csv`` and turn them into tensors for ``config.clip``."""
    train_records = load_split(data_dir / "train.csv")
    val_records = load_split(data_dir / "val.csv")
    log(f"data: {len(train_records)} train / {len(val_records)} val memes from {data_dir}")
    register_model_configs()
    torch.manual_seed(config.train.seed)
    pretrained = normalise_pretrained(config.pretrained)
    probe = create_clip(config.clip, pretrained)
    preprocessing = preprocessing_for(probe)
    context_length = clip_context_length(probe)
    tokenize = open_clip.get_tokenizer(config.clip, context_length=context_length)
    train = build_tensors(train_records, tokenize, preprocessing, progress, "preprocess train")
    val = build_tensors(val_records, tokenize, preprocessing, progress, "preprocess val")
    return PreparedData(train, val, preprocessing, context_length, pretrained, probe, tokenize)


def check_kinds(models: tuple[str, ...]) -> None:
    unknown = set(models) - set(MODEL_REGISTRY)
    if unknown:
        raise ValueError(f"unknown model kinds {sorted(unknown)}; choose from {sorted(MODEL_REGISTRY)}")


def train_clip_models(
    data: PreparedData,
    run_dir: Path,
    config: RecipeConfig,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, TrainResult]:
    """CLIP-text and CLIP-image (also when only CLIP-multi is asked for), then CLIP-multi built on them."""
    results: dict[str, TrainResult] = {}
    for kind in ("clip_text", "clip_image"):
        if kind not in config.models and "clip_multi" not in config.models:
            continue
        clip = data.probe if kind == "clip_text" else create_clip(config.clip, data.pretrained)
        model = build_unimodal(kind, clip, config.model)
        if config.init_from:
            warm_start(model, Path(config.init_from) / kind / "checkpoint.pt", kind)
        results[kind] = train_model(
            model, kind, data.train, data.val, config.train, run_dir / kind, config.clip, config.model, progress, log
        )
    if "clip_multi" in config.models:
        multi = build_multi(results["clip_text"].model, results["clip_image"].model, config.model)
        results["clip_multi"] = train_model(
            multi,
            "clip_multi",
            data.train,
            data.val,
            config.train,
            run_dir / "clip_multi",
            config.clip,
            config.model,
            progress,
            log,
        )
    return results


def train_registered_kind(
    kind: str,
    data_dir: Path,
    data: PreparedData,
    run_dir: Path,
    config: RecipeConfig,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Any other registered kind: from a fresh backbone, with inputs of its own if it prepares
    them (OSCAR: detector regions, BERT ids), by its own trainer if it has one (PM+MO: SVI)."""
    spec = model_kind(kind)
    out_dir = run_dir / kind
    if spec.prepare is not None or spec.fit is not None:
        records = {split: load_split(data_dir / f"{split}.csv") for split in ("train", "val")}
        tensors = {"train": data.train, "val": data.val}
        kind_data = KindData(records, tensors, config, out_dir, progress, log)
        if spec.fit is not None:  # not a torch model (tfidf_lr)
            out_dir.mkdir(parents=True, exist_ok=True)
            return spec.fit(kind_data)
        prepared = spec.prepare(kind_data)
        train, val = prepared.tensors["train"], prepared.tensors["val"]
        return train_model(
            prepared.model, kind, train, val, config.train, out_dir, config.clip, prepared.model_config, progress, log
        )
    model = build_model(kind, config.clip, config.model, data.pretrained)
    trainer = spec.train or train_model  # PM+MO trains by SVI (training/fusion/train_pmmo.py)
    return trainer(model, kind, data.train, data.val, config.train, out_dir, config.clip, config.model, progress, log)


def run_summary(
    data_dir: Path,
    data: PreparedData,
    config: RecipeConfig,
    results: dict[str, TrainResult],
    started: float,
) -> dict:
    """``summary.json``: the backbone, data, recipe, each model's validation and the ensemble's."""
    members = {kind: r.val_probabilities for kind, r in results.items()}
    return {
        "clip": config.clip,
        "pretrained": data.pretrained,
        "context_length": data.context_length,
        "preprocessing": data.preprocessing.model_dump(mode="json"),
        "data": {"dir": str(data_dir), "train": len(data.train), "val": len(data.val)},
        "recipe": asdict(replace(config, pretrained=data.pretrained)),
        "models": {
            kind: {
                "checkpoint": f"{kind}/checkpoint.pt" if model_kind(kind).fit is None else None,
                "best_epoch": r.best_epoch,
                "seconds": round(r.seconds, 2),
                "validation": r.scores,
                "blend_weights": r.blend_weights,
            }
            for kind, r in results.items()
        },
        "ensemble": ensemble_summary(
            members,
            data.val.target_columns(),
            config.ensemble_search,
            config.task_b,
            config.ensemble_objective,
            config.ensemble_rules,
            config.member_heads,
        ),
        "seconds": round(time.perf_counter() - started, 2),
    }


def check_training_cost(config: RecipeConfig, data: PreparedData, log: Callable[[str], None]) -> RecipeConfig:
    """Say what training will cost (training/cost_estimate.py); lower the batch size to stay
    within this machine's free memory (said loudly), or MemoryError when even batch 1 would not."""
    towers = clip_towers(data.probe)
    if "bert_text" in config.models:
        towers["bert"] = encoder_tower(config.text_encoder)
    per_meme = 3 * data.preprocessing.image_size**2 * 4 + data.context_length * 8
    memes = (len(data.train), len(data.val))
    rate, available = matmul_rate("cpu", 512, seconds=0.2), available_memory_bytes()

    def estimate(batch: int) -> TrainingCost:
        return training_cost(towers, config.models, memes, per_meme, batch, rate, available)

    cost = fit_batch_size(estimate(config.train.batch_size), estimate)
    log(cost.describe(config.models, memes[0]))
    if cost.batch_size == config.train.batch_size:
        return config
    log(f"WARNING: batch size lowered from {config.train.batch_size} to {cost.batch_size} to fit this machine's memory")
    return replace(config, train=replace(config.train, batch_size=cost.batch_size))


def train_recipe(
    data_dir: Path,
    run_dir: Path,
    config: RecipeConfig,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, TrainResult]:
    """Train every model in ``config.models`` on ``data_dir/{train,val}.csv``; write ``run_dir``."""
    if config.threads:
        torch.set_num_threads(config.threads)
    check_kinds(config.models)
    data = prepare_data(data_dir, config, progress, log)
    config = check_training_cost(config, data, log)
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = train_clip_models(data, run_dir, config, progress, log)
    for kind in config.models:
        if kind not in MODEL_KINDS:
            results[kind] = train_registered_kind(kind, data_dir, data, run_dir, config, progress, log)
    results = {kind: results[kind] for kind in config.models}
    summary = run_summary(data_dir, data, config, results, started)
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return results


def read_summary(run_dir: Path) -> dict:
    path = run_dir / SUMMARY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a `memotion train` run directory?")
    return json.loads(path.read_text())
