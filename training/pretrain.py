"""The two pre-training stages before Memotion (paper Sec. 4).

1. ``pretrainCLIP``: the whole CLIP (both towers, their projections W_t / W_i and the logit scale k)
   learns to match meme images with their OCR text under a contrastive loss (eq. 1-3; or NT-Xent /
   NT-Logistic). Writes ``clip_pre.pt``, an open_clip state dict that ``create_clip(name,
   "path/clip_pre.pt")`` loads: CLIP_pre, whose towers become CLIP_pre,t and CLIP_pre,i.
2. ``pretrainuni``: CLIP-text and CLIP-image (paper Fig. 1), built on CLIP_pre, learn binary
   hateful / misogynous classification (Hateful Memes + MAMI). Writes ``<kind>/checkpoint.pt``,
   whose bodies initialise the Memotion stage's models (``RecipeConfig.init_from``).

Images are read and preprocessed batch by batch (a DataLoader), so data sets of any size fit.
Both stages run the one training loop (training/loop.py) with a strategy of their own
(:class:`ContrastiveStage`, :class:`BinaryStage`). Each writes ``history.json`` and
``loss_curve.png`` beside its checkpoint.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import CLIP
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from memotion.labels import TaskSpec
from memotion.manifest import Preprocessing
from memotion.preprocess import image_to_array
from training.backbone import clip_context_length, create_clip, normalise_pretrained
from training.contrastive import CONTRASTIVE_LOSSES, contrastive_loss
from training.data.pairs import DataRef, PairRecord, load_all_pairs, require_labels
from training.factory import ModelConfig, build_unimodal, prediction_branch, run_branches, save_checkpoint
from training.loop import EpochResult, LoopResult, StepStats, optimise, run_loop, total_steps
from training.metrics import weighted_f1
from training.plots import plt, save_figure
from training.recipe import preprocessing_for
from training.warm_start import replace_heads

CLIP_PRE_FILE = "clip_pre.pt"
UNIMODAL_KINDS = ("clip_text", "clip_image")
# The binary pre-training label: hateful (Hateful Memes) or misogynous (MAMI).
HATEFUL = TaskSpec("hateful", ("not_hateful", "hateful"), ("NH", "H"))
MAX_LOGIT_SCALE = math.log(100.0)  # CLIP clips e^k at 100


@dataclass(frozen=True)
class ContrastiveConfig:
    epochs: int = 1
    batch_size: int = 32
    lr: float = 1e-5
    weight_decay: float = 1e-2
    loss: str = "clip"  # clip | nt-xent | nt-logistic
    temperature: float = 0.1  # tau of the NT losses (the clip loss learns its scale k)
    max_steps: int | None = None
    seed: int = 0
    num_workers: int = 0  # DataLoader workers reading images

    def __post_init__(self) -> None:
        if self.loss not in CONTRASTIVE_LOSSES:
            raise ValueError(f"unknown contrastive loss {self.loss!r}; choose from {list(CONTRASTIVE_LOSSES)}")
        if self.batch_size < 2:
            raise ValueError("contrastive pre-training needs batches of at least 2 pairs")
        if self.temperature <= 0:
            raise ValueError("temperature must be positive")


@dataclass(frozen=True)
class BinaryConfig:
    epochs: int = 2
    batch_size: int = 32
    lr: float = 2e-5
    weight_decay: float = 1e-2
    max_steps: int | None = None
    seed: int = 0
    num_workers: int = 0


@dataclass
class StageResult:
    checkpoint: Path
    best_epoch: int
    scores: dict[str, float]
    history: dict[str, list] = field(default_factory=dict)
    seconds: float = 0.0


# --- data -----------------------------------------------------------------------------------------


class PairDataset(Dataset):
    """Pairs -> (pixels [3, S, S], text, label or -1), images decoded on access."""

    def __init__(self, records: Sequence[PairRecord], preprocessing: Preprocessing) -> None:
        self.records = list(records)
        self.preprocessing = preprocessing

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str, int]:
        record = self.records[index]
        with Image.open(record.image_path) as image:
            pixels = torch.from_numpy(image_to_array(image, self.preprocessing))
        return pixels, record.text, -1 if record.label is None else record.label


@dataclass
class PairBatch:
    input_ids: torch.Tensor
    pixel_values: torch.Tensor
    labels: torch.Tensor


class Collate:
    """Stacks pixels and tokenises the batch's texts (picklable, for DataLoader workers)."""

    def __init__(self, tokenize: Callable[[Sequence[str]], torch.Tensor]) -> None:
        self.tokenize = tokenize

    def __call__(self, items: list[tuple[torch.Tensor, str, int]]) -> PairBatch:
        pixels, texts, labels = zip(*items)
        return PairBatch(
            self.tokenize(list(texts)).to(torch.int64), torch.stack(pixels), torch.tensor(labels, dtype=torch.int64)
        )


@dataclass(frozen=True)
class PairIO:
    """How a CLIP reads memes: its tokenizer and its image preprocessing."""

    tokenize: Callable[[Sequence[str]], torch.Tensor]
    preprocessing: Preprocessing


def pair_io(clip: CLIP, clip_name: str) -> PairIO:
    return PairIO(open_clip.get_tokenizer(clip_name, context_length=clip_context_length(clip)), preprocessing_for(clip))


def pair_loader(
    records: Sequence[PairRecord],
    io: PairIO,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    return DataLoader(
        PairDataset(records, io.preprocessing),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
        num_workers=num_workers,
        collate_fn=Collate(io.tokenize),
        drop_last=drop_last,
    )


# --- stage 1: CLIP contrastive pre-training -------------------------------------------------------


def clip_features(clip: CLIP, batch: PairBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected (not yet normalised) W_t F_cls,t and W_i F_cls,i (eq. 1-2)."""
    return clip.encode_text(batch.input_ids), clip.encode_image(batch.pixel_values)


def retrieval_accuracy(text: torch.Tensor, image: torch.Tensor) -> dict[str, float]:
    """Top-1 retrieval over the whole set: each text's best image, each image's best text."""
    sim = F.normalize(text, dim=-1) @ F.normalize(image, dim=-1).T
    target = torch.arange(sim.shape[0])
    return {
        "text_to_image_top1": float((sim.argmax(dim=1) == target).float().mean()),
        "image_to_text_top1": float((sim.argmax(dim=0) == target).float().mean()),
    }


def evaluate_contrastive(clip: CLIP, loader: DataLoader, config: ContrastiveConfig) -> dict[str, float]:
    clip.eval()
    losses, texts, images = [], [], []
    with torch.no_grad():
        for batch in loader:
            text, image = clip_features(clip, batch)
            if len(text) >= 2:
                losses.append(contrastive_loss(config.loss, text, image, clip.logit_scale, config.temperature).item())
            texts.append(text)
            images.append(image)
    return {
        "val_loss": float(np.mean(losses)) if losses else float("nan"),
        **retrieval_accuracy(torch.cat(texts), torch.cat(images)),
    }


def pretrain_clip(
    clip: CLIP,
    clip_name: str,
    train: Sequence[PairRecord],
    val: Sequence[PairRecord],
    config: ContrastiveConfig,
    out_dir: Path,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> StageResult:
    """Contrastive pre-training of the whole CLIP; the best epoch (lowest validation loss, or the
    last without validation data) is written as ``out_dir/clip_pre.pt``."""
    if len(train) < 2:
        raise ValueError("contrastive pre-training needs at least 2 image/text pairs")
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    io = pair_io(clip, clip_name)
    drop_last = len(train) % config.batch_size == 1  # a batch of one pair has no negatives
    train_loader = pair_loader(train, io, config.batch_size, True, config.seed, config.num_workers, drop_last)
    val_loader = pair_loader(val, io, config.batch_size, False, num_workers=config.num_workers) if val else None
    optimizer = torch.optim.AdamW(clip.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    stage = ContrastiveStage(clip, config, train_loader, val_loader, optimizer, log)
    loop = run_stage(stage, config.epochs, config.max_steps, progress)
    checkpoint = out_dir / CLIP_PRE_FILE
    # Plain types only: open_clip loads it with torch.load(weights_only=True).
    torch.save(
        {
            "state_dict": loop.state,
            "clip": clip_name,
            "stage": "pretrain_clip",
            "loss": config.loss,
            "epoch": loop.best_epoch,
        },
        checkpoint,
    )
    title = f"CLIP contrastive pre-training ({config.loss})"
    retrieval = ("text_to_image_top1", "image_to_text_top1")
    history = write_stage_history(out_dir, stage, loop, config, title, retrieval, "top-1 retrieval")
    return StageResult(checkpoint, loop.best_epoch, loop.best.scores, history, loop.seconds)


# --- stage 2: binary pre-training of the uni-modal models -----------------------------------------


def binary_unimodal(kind: str, clip: CLIP, config: ModelConfig) -> nn.Module:
    """CLIP-text or CLIP-image (paper Fig. 1) with one binary 'hateful' head."""
    return replace_heads(build_unimodal(kind, clip, config), (HATEFUL,))


def binary_logits(model: nn.Module, kind: str, batch: PairBatch) -> torch.Tensor:
    return run_branches(model, kind, batch.input_ids, batch.pixel_values)[prediction_branch(kind)][0]


def evaluate_binary(model: nn.Module, kind: str, loader: DataLoader) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    model.eval()
    losses, probabilities, labels = [], [], []
    with torch.no_grad():
        for batch in loader:
            logits = binary_logits(model, kind, batch)
            losses.append(F.cross_entropy(logits, batch.labels, reduction="sum").item())
            probabilities.append(torch.softmax(logits, dim=-1)[:, 1].numpy())
            labels.append(batch.labels.numpy())
    p, y = np.concatenate(probabilities), np.concatenate(labels)
    predicted = (p >= 0.5).astype(np.int64)
    return {
        "val_loss": float(np.sum(losses) / len(y)),
        "val_accuracy": float((predicted == y).mean()),
        "val_f1": weighted_f1(y, predicted, 2),
        "val_auroc": float(roc_auc_score(y, p)) if len(set(y.tolist())) == 2 else float("nan"),
    }


def pretrain_unimodal(
    model: nn.Module,
    kind: str,
    clip_name: str,
    model_config: ModelConfig,
    io: PairIO,
    train: Sequence[PairRecord],
    val: Sequence[PairRecord],
    config: BinaryConfig,
    out_dir: Path,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> StageResult:
    """Binary CE training; keeps the epoch with the best validation weighted F1 (the last one
    without validation data) and writes ``out_dir/checkpoint.pt``."""
    require_labels(list(train), "binary pre-training data")
    if val:
        require_labels(list(val), "binary pre-training validation data")
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    train_loader = pair_loader(train, io, config.batch_size, True, config.seed, config.num_workers)
    val_loader = pair_loader(val, io, config.batch_size, False, num_workers=config.num_workers) if val else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    stage = BinaryStage(model, kind, train_loader, val_loader, optimizer, log)
    loop = run_stage(stage, config.epochs, config.max_steps, progress)
    meta = {
        "stage": "pretrain_uni",
        "tasks": [HATEFUL.name],
        "epoch": loop.best_epoch,
        "scores": loop.best.scores,
        "train_config": asdict(config),
    }
    checkpoint = save_checkpoint(out_dir / "checkpoint.pt", model, kind, clip_name, model_config, meta)
    validation = ("val_accuracy", "val_f1", "val_auroc")
    history = write_stage_history(
        out_dir, stage, loop, config, f"{kind}: binary pre-training", validation, "validation"
    )
    return StageResult(checkpoint, loop.best_epoch, loop.best.scores, history, loop.seconds)


# --- the stages' strategies for the training loop -------------------------------------------------


class PairStage:
    """The loop's strategy for a pre-training stage on pair batches: one optimiser, the loss per
    step in ``steps``, validation on ``val_loader`` (if any) after every epoch. Subclasses give the
    loss, the validation, and the key the best epoch maximises (the last epoch without validation)."""

    postfix = ("loss",)

    def __init__(
        self,
        model: nn.Module,
        name: str,
        train_loader: DataLoader,
        val_loader: DataLoader | None,
        optimizer: torch.optim.Optimizer,
        log: Callable[[str], None],
    ) -> None:
        self.model, self.name, self.log = model, name, log
        self.train_loader, self.val_loader, self.optimizer = train_loader, val_loader, optimizer
        self.steps: list[dict[str, float]] = []

    def loss(self, batch: PairBatch) -> torch.Tensor:
        raise NotImplementedError

    def after_step(self) -> dict[str, float]:
        """Anything to do after the optimiser's step; returns extra statistics for the step log."""
        return {}

    def evaluate(self, loader: DataLoader) -> dict[str, float]:
        raise NotImplementedError

    def key(self, record: dict[str, float]) -> float:
        raise NotImplementedError

    def begin_epoch(self, epoch: int) -> DataLoader:
        return self.train_loader

    def train_step(self, batch: PairBatch, epoch: int, step: int) -> StepStats:
        loss = self.loss(batch)
        optimise(loss, self.optimizer)
        extras = self.after_step()
        self.steps.append({"step": step + 1, "epoch": epoch, "loss": loss.item(), **extras})
        return self.steps[-1]

    def validate(self, epoch: int, step: int, stats: list[StepStats]) -> EpochResult:
        record = {"epoch": epoch, "step": step, "train_loss": float(np.mean([s["loss"] for s in stats]))}
        if self.val_loader is None:
            return EpochResult(record, float(epoch), record)
        record.update(self.evaluate(self.val_loader))
        return EpochResult(record, self.key(record), record)

    def end_epoch(self, epoch: int, result: EpochResult) -> None:
        self.log(
            f"[{self.name}] epoch {epoch}: "
            + "  ".join(f"{k} {v:.4f}" for k, v in result.entry.items() if k not in ("epoch", "step"))
        )


class ContrastiveStage(PairStage):
    """pretrainCLIP: the contrastive loss of a batch's pairs; the best epoch has the lowest
    validation loss. CLIP's logit scale is clamped after every step (e^k at most 100)."""

    def __init__(
        self,
        clip: CLIP,
        config: ContrastiveConfig,
        train_loader: DataLoader,
        val_loader: DataLoader | None,
        optimizer: torch.optim.Optimizer,
        log: Callable[[str], None],
    ) -> None:
        super().__init__(clip, "pretrain CLIP", train_loader, val_loader, optimizer, log)
        self.clip, self.config = clip, config
        self.desc = f"pretrain CLIP ({config.loss})"

    def loss(self, batch: PairBatch) -> torch.Tensor:
        text, image = clip_features(self.clip, batch)
        return contrastive_loss(self.config.loss, text, image, self.clip.logit_scale, self.config.temperature)

    def after_step(self) -> dict[str, float]:
        with torch.no_grad():
            self.clip.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)
        return {"logit_scale": float(self.clip.logit_scale.detach().exp())}

    def evaluate(self, loader: DataLoader) -> dict[str, float]:
        return evaluate_contrastive(self.clip, loader, self.config)

    def key(self, record: dict[str, float]) -> float:
        return -record["val_loss"]


class BinaryStage(PairStage):
    """pretrainuni: binary CE; the best epoch has the best validation weighted F1."""

    def __init__(
        self,
        model: nn.Module,
        kind: str,
        train_loader: DataLoader,
        val_loader: DataLoader | None,
        optimizer: torch.optim.Optimizer,
        log: Callable[[str], None],
    ) -> None:
        super().__init__(model, f"pretrain {kind}", train_loader, val_loader, optimizer, log)
        self.kind = kind
        self.desc = f"pretrain {kind} (binary)"

    def loss(self, batch: PairBatch) -> torch.Tensor:
        return F.cross_entropy(binary_logits(self.model, self.kind, batch), batch.labels)

    def evaluate(self, loader: DataLoader) -> dict[str, float]:
        return evaluate_binary(self.model, self.kind, loader)

    def key(self, record: dict[str, float]) -> float:
        return record["val_f1"]


def run_stage(stage: PairStage, epochs: int, max_steps: int | None, progress: bool) -> LoopResult:
    """The training loop over ``stage``'s training batches."""
    steps = total_steps(len(stage.train_loader), epochs, max_steps)
    return run_loop(stage.model, stage, epochs, steps, progress)


def write_stage_history(
    out_dir: Path,
    stage: PairStage,
    loop: LoopResult,
    config: ContrastiveConfig | BinaryConfig,
    title: str,
    metric_keys: Sequence[str],
    label: str,
) -> dict[str, list]:
    """``history.json`` (per step, per epoch, the config) and ``loss_curve.png`` of a stage."""
    history = {"steps": stage.steps, "epochs": loop.history, "config": asdict(config)}
    (out_dir / "history.json").write_text(json.dumps(history, indent=2))
    plot_stage_curves(stage.steps, loop.history, out_dir / "loss_curve.png", title, metric_keys, label)
    return history


# --- stage runners (CLI and schedule) -------------------------------------------------------------


def run_clip_pretraining(
    train_refs: Sequence[DataRef],
    val_refs: Sequence[DataRef],
    out_dir: Path,
    clip_name: str,
    pretrained: str | None,
    config: ContrastiveConfig,
    threads: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> StageResult:
    """Stage pretrainCLIP: load the pairs, start from ``pretrained``, write ``clip_pre.pt``."""
    if threads:
        torch.set_num_threads(threads)
    train, val = load_all_pairs(train_refs), load_all_pairs(val_refs)
    log(
        f"pretrain CLIP: {len(train)} train / {len(val)} val pairs from "
        + ", ".join(f"{r.format}:{r.path}" for r in train_refs)
    )
    clip = create_clip(clip_name, normalise_pretrained(pretrained))
    result = pretrain_clip(clip, clip_name, train, val, config, out_dir, progress, log)
    log(f"CLIP_pre written to {result.checkpoint} (epoch {result.best_epoch})")
    return result


def run_unimodal_pretraining(
    train_refs: Sequence[DataRef],
    val_refs: Sequence[DataRef],
    out_dir: Path,
    clip_name: str,
    pretrained: str | None,
    model_config: ModelConfig,
    config: BinaryConfig,
    kinds: Sequence[str] = UNIMODAL_KINDS,
    threads: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, StageResult]:
    """Stage pretrainuni: CLIP-text and CLIP-image on CLIP_pre (``pretrained``: its checkpoint),
    binary labels; writes ``out_dir/<kind>/checkpoint.pt``."""
    unknown = set(kinds) - set(UNIMODAL_KINDS)
    if unknown:
        raise ValueError(f"binary pre-training is for {list(UNIMODAL_KINDS)}, not {sorted(unknown)}")
    if threads:
        torch.set_num_threads(threads)
    train, val = load_all_pairs(train_refs), load_all_pairs(val_refs)
    require_labels(train, "binary pre-training data")
    positives = sum(r.label == 1 for r in train)
    log(f"pretrain uni-modal: {len(train)} train ({positives} hateful/misogynous) / {len(val)} val memes")
    results = {}
    for kind in kinds:
        torch.manual_seed(config.seed)
        clip = create_clip(clip_name, normalise_pretrained(pretrained))
        model = binary_unimodal(kind, clip, model_config)
        results[kind] = pretrain_unimodal(
            model,
            kind,
            clip_name,
            model_config,
            pair_io(clip, clip_name),
            train,
            val,
            config,
            out_dir / kind,
            progress,
            log,
        )
    write_uni_summary(out_dir, clip_name, pretrained, results)
    return results


def write_uni_summary(out_dir: Path, clip_name: str, pretrained: str | None, results: dict[str, StageResult]) -> None:
    """``pretrain_uni.json``: the backbone and each model's checkpoint, best epoch and validation."""
    models = {
        k: {"checkpoint": f"{k}/checkpoint.pt", "best_epoch": r.best_epoch, "validation": r.scores}
        for k, r in results.items()
    }
    summary = {"clip": clip_name, "pretrained": pretrained, "models": models}
    (out_dir / "pretrain_uni.json").write_text(json.dumps(summary, indent=2))


# --- helpers --------------------------------------------------------------------------------------


def plot_stage_curves(
    steps: Sequence[dict],
    epochs: Sequence[dict],
    path: Path,
    title: str,
    metric_keys: Sequence[str],
    metric_label: str,
) -> Path:
    """Training loss per step (and validation loss per epoch); validation metrics per epoch."""
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(10, 4))
    loss_ax.plot([s["step"] for s in steps], [s["loss"] for s in steps], lw=1, label="train loss")
    if epochs and "val_loss" in epochs[0]:
        loss_ax.plot([e["step"] for e in epochs], [e["val_loss"] for e in epochs], marker="o", label="validation loss")
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("loss")
    loss_ax.legend()
    for key in metric_keys:
        if epochs and key in epochs[0]:
            metric_ax.plot([e["epoch"] for e in epochs], [e[key] for e in epochs], marker="o", label=key)
    metric_ax.set_xlabel("epoch")
    metric_ax.set_ylabel(metric_label)
    metric_ax.set_ylim(0, 1)
    if metric_ax.get_legend_handles_labels()[0]:
        metric_ax.legend()
    else:
        metric_ax.text(0.5, 0.5, "no validation data", ha="center", va="center")
    fig.suptitle(title)
    return save_figure(fig, path)
