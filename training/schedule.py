"""The paper's staged schedule as a config: pretrainCLIP -> pretrainuni -> Memotion (Sec. 4).

A schedule file (``training/configs/schedule-*.json``, or any JSON path) names the backbone, the
data sets of each stage (format + path relative to a data root) and each stage's hyper-parameters.
``run_schedule`` runs the stages in order, each starting from the one before:

    out/pretrain_clip/clip_pre.pt          CLIP_pre (contrastive, eq. 1-3)
    out/pretrain_uni/<kind>/checkpoint.pt  CLIP-text / CLIP-image on CLIP_pre, binary hateful
    out/memotion/                          the Memotion run (`memotion export --run out/memotion`)
    out/schedule.json                      the resolved schedule and what each stage reached

A stage set to ``null`` is skipped (the next one starts from the schedule's ``pretrained``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from training.backbone import CONFIG_DIR
from training.data.hateful_memes import write_hateful_memes
from training.data.mami import write_mami
from training.data.pairs import DataRef, PairFormat, memotion_pairs
from training.factory import MODEL_KINDS, ModelConfig
from training.pretrain import (
    UNIMODAL_KINDS,
    BinaryConfig,
    ContrastiveConfig,
    run_clip_pretraining,
    run_unimodal_pretraining,
)
from training.recipe import RecipeConfig, train_recipe
from training.trainer import TrainConfig

SCHEDULE_PREFIX = "schedule-"


class DataSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: PairFormat
    path: str

    def ref(self, root: Path) -> DataRef:
        return DataRef(self.format, Path(self.path)).resolved(root)


class ClipStage(BaseModel):
    """pretrainCLIP: image/text pairs (labels unused)."""

    model_config = ConfigDict(extra="forbid")
    train: list[DataSpec] = Field(min_length=1)
    val: list[DataSpec] = []
    training: ContrastiveConfig = ContrastiveConfig()


class UniStage(BaseModel):
    """pretrainuni: binary hateful / misogynous classification of the uni-modal models."""

    model_config = ConfigDict(extra="forbid")
    train: list[DataSpec] = Field(min_length=1)
    val: list[DataSpec] = []
    models: list[str] = list(UNIMODAL_KINDS)
    training: BinaryConfig = BinaryConfig()


class MemotionStage(BaseModel):
    """The Memotion stage: ``data`` is a folder with train.csv and val.csv."""

    model_config = ConfigDict(extra="forbid")
    data: str
    models: list[str] = list(MODEL_KINDS)
    training: TrainConfig = TrainConfig()


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    clip: str = "ViT-B-32"
    pretrained: str | None = "openai"
    model: ModelConfig = ModelConfig()
    threads: int | None = None
    pretrain_clip: ClipStage | None = None
    pretrain_uni: UniStage | None = None
    memotion: MemotionStage | None = None


def schedule_names() -> list[str]:
    return sorted(p.stem.removeprefix(SCHEDULE_PREFIX) for p in CONFIG_DIR.glob(f"{SCHEDULE_PREFIX}*.json"))


def load_schedule(name_or_path: str | Path) -> Schedule:
    """A shipped schedule by name (``paper``, ``tiny``) or a JSON file."""
    path = Path(name_or_path)
    if not path.is_file():
        path = CONFIG_DIR / f"{SCHEDULE_PREFIX}{name_or_path}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no schedule {name_or_path!r}: not a file and not one of {schedule_names()}")
    return Schedule.model_validate_json(path.read_text())


def _clip_stage(
    schedule: Schedule, stage: ClipStage, data_root: Path, out_dir: Path, progress: bool, log: Callable[[str], None]
) -> tuple[str, dict]:
    """pretrainCLIP from the schedule's ``pretrained``; returns CLIP_pre's path and the stage's report."""
    log(f"== stage pretrainCLIP ({stage.training.loss} loss)")
    result = run_clip_pretraining(
        [d.ref(data_root) for d in stage.train],
        [d.ref(data_root) for d in stage.val],
        out_dir / "pretrain_clip",
        schedule.clip,
        schedule.pretrained,
        stage.training,
        schedule.threads,
        progress,
        log,
    )
    checkpoint = str(result.checkpoint)
    return checkpoint, {"checkpoint": checkpoint, "best_epoch": result.best_epoch, "validation": result.scores}


def _uni_stage(
    schedule: Schedule,
    stage: UniStage,
    pretrained: str | None,
    data_root: Path,
    out_dir: Path,
    progress: bool,
    log: Callable[[str], None],
) -> tuple[str | None, dict]:
    """pretrainuni on ``pretrained``; returns the run directory the Memotion stage starts from
    (None unless both uni-modal models trained) and the stage's report."""
    log("== stage pretrainuni (binary hateful / misogynous)")
    results = run_unimodal_pretraining(
        [d.ref(data_root) for d in stage.train],
        [d.ref(data_root) for d in stage.val],
        out_dir / "pretrain_uni",
        schedule.clip,
        pretrained,
        schedule.model,
        stage.training,
        stage.models,
        schedule.threads,
        progress,
        log,
    )
    init_from = str(out_dir / "pretrain_uni") if set(stage.models) == set(UNIMODAL_KINDS) else None
    report = {
        kind: {"checkpoint": str(r.checkpoint), "best_epoch": r.best_epoch, "validation": r.scores}
        for kind, r in results.items()
    }
    return init_from, report


def _memotion_stage(
    schedule: Schedule,
    stage: MemotionStage,
    pretrained: str | None,
    init_from: str | None,
    data_root: Path,
    out_dir: Path,
    progress: bool,
    log: Callable[[str], None],
) -> dict:
    """The Memotion recipe on ``pretrained`` (CLIP-text / CLIP-image from ``init_from``)."""
    log("== stage Memotion")
    if init_from is None and schedule.pretrain_uni is not None:
        log("pretrainuni did not train both uni-modal models: Memotion starts from CLIP_pre")
    recipe = RecipeConfig(
        clip=schedule.clip,
        pretrained=pretrained,
        models=tuple(stage.models),
        model=schedule.model,
        train=stage.training,
        threads=schedule.threads,
        init_from=init_from,
    )
    results = train_recipe(Path(data_root) / stage.data, out_dir / "memotion", recipe, progress, log)
    return {"run": str(out_dir / "memotion"), "validation": {k: r.scores for k, r in results.items()}}


def run_schedule(
    schedule: Schedule,
    data_root: Path,
    out_dir: Path,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Run every stage the schedule has, in order; returns (and writes) ``schedule.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pretrained = schedule.pretrained
    report: dict = {"schedule": schedule.model_dump(mode="json"), "data_root": str(data_root), "stages": {}}
    stages = report["stages"]
    if schedule.pretrain_clip is not None:
        pretrained, stages["pretrain_clip"] = _clip_stage(
            schedule, schedule.pretrain_clip, data_root, out_dir, progress, log
        )
    init_from = None
    if schedule.pretrain_uni is not None:
        init_from, stages["pretrain_uni"] = _uni_stage(
            schedule, schedule.pretrain_uni, pretrained, data_root, out_dir, progress, log
        )
    if schedule.memotion is not None:
        stages["memotion"] = _memotion_stage(
            schedule, schedule.memotion, pretrained, init_from, data_root, out_dir, progress, log
        )
    (out_dir / "schedule.json").write_text(json.dumps(report, indent=2, default=str))
    return report


def write_pretraining_formats(memotion_dir: Path) -> dict[str, Path]:
    """Copy a (synthetic) Memotion data set's memes into the Hateful Memes and MAMI formats beside
    it, binary label = offensive: ``hateful_memes/{train,dev}.jsonl`` (first half of train, and
    val) and ``mami/training.csv`` (second half of train). This is the data layout
    ``schedule-tiny.json`` expects."""
    memotion_dir = Path(memotion_dir)
    train = memotion_pairs(memotion_dir / "train.csv")
    val = memotion_pairs(memotion_dir / "val.csv")
    half = len(train) // 2
    return {
        "hateful_memes_train": write_hateful_memes(memotion_dir / "hateful_memes" / "train.jsonl", train[:half]),
        "hateful_memes_dev": write_hateful_memes(memotion_dir / "hateful_memes" / "dev.jsonl", val),
        "mami_training": write_mami(memotion_dir / "mami" / "training.csv", train[half:]),
    }


def override_training(schedule: Schedule, **changes) -> Schedule:
    """The schedule with every stage's training config changed (e.g. ``max_steps``, ``seed``)."""
    updates = {}
    for name in ("pretrain_clip", "pretrain_uni", "memotion"):
        stage = getattr(schedule, name)
        if stage is not None:
            fields = {k: v for k, v in changes.items() if k in asdict(stage.training)}
            updates[name] = stage.model_copy(update={"training": replace(stage.training, **fields)})
    return schedule.model_copy(update=updates)
