"""The two pre-training stages before Memotion (paper Sec. 4).

1. ``pretrainCLIP``: the whole CLIP (both towers, their projections W_t / W_i and the logit scale k)
   learns to match meme images with their OCR text under a contrastive loss (eq. 1-3; or NT-Xent /
   NT-Logistic). Writes ``clip_pre.pt``, an open_clip state dict that ``create_clip(name,
   "path/clip_pre.pt")`` loads: CLIP_pre, whose towers become CLIP_pre,t and CLIP_pre,i.
2. ``pretrainuni``: CLIP-text and CLIP-image (paper Fig. 1), built on CLIP_pre, learn binary
   hateful / misogynous classification (Hateful Memes + MAMI). Writes ``<kind>/checkpoint.pt``,
   whose bodies initialise the Memotion stage's models (``RecipeConfig.init_from``).

Images are read and preprocessed batch by batch (a DataLoader), so data sets of any size fit.
Each stage writes ``history.json`` and ``loss_curve.png`` beside its checkpoint.
"""

from __future__ import annotations

import copy
import json
import math
import time
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
from memotion.progress import progress_bar
from training.backbone import clip_context_length, create_clip, normalise_pretrained
from training.contrastive import CONTRASTIVE_LOSSES, contrastive_loss
from training.data.pairs import DataRef, PairRecord, load_all_pairs, require_labels
from training.factory import ModelConfig, build_unimodal, prediction_branch, run_branches, save_checkpoint
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
    train_loader = pair_loader(
        train,
        io,
        config.batch_size,
        True,
        config.seed,
        config.num_workers,
        drop_last=len(train) % config.batch_size == 1,
    )
    val_loader = pair_loader(val, io, config.batch_size, False, num_workers=config.num_workers) if val else None
    optimizer = torch.optim.AdamW(clip.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    total = _total_steps(len(train_loader), config.epochs, config.max_steps)
    steps: list[dict[str, float]] = []
    epochs: list[dict[str, float]] = []
    best: tuple[float, int, dict, dict[str, float]] | None = None
    started = time.perf_counter()
    bar = progress_bar(total=total, desc=f"pretrain CLIP ({config.loss})", disable=not progress, unit="step")
    for epoch in range(1, config.epochs + 1):
        if len(steps) >= total:
            break
        clip.train()
        for batch in train_loader:
            if len(steps) >= total:
                break
            text, image = clip_features(clip, batch)
            loss = contrastive_loss(config.loss, text, image, clip.logit_scale, config.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                clip.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)
            steps.append(
                {
                    "step": len(steps) + 1,
                    "epoch": epoch,
                    "loss": loss.item(),
                    "logit_scale": float(clip.logit_scale.detach().exp()),
                }
            )
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}", refresh=False)
        record = {
            "epoch": epoch,
            "step": len(steps),
            "train_loss": float(np.mean([s["loss"] for s in steps if s["epoch"] == epoch])),
        }
        if val_loader is not None:
            record.update(evaluate_contrastive(clip, val_loader, config))
        epochs.append(record)
        log(
            f"[pretrain CLIP] epoch {epoch}: "
            + "  ".join(f"{k} {v:.4f}" for k, v in record.items() if k not in ("epoch", "step"))
        )
        key = -record["val_loss"] if val_loader is not None else float(epoch)
        if best is None or key > best[0]:
            best = (key, epoch, copy.deepcopy(clip.state_dict()), record)
    bar.close()
    assert best is not None, "no epoch ran"
    _, best_epoch, state, scores = best
    clip.load_state_dict(state)
    checkpoint = out_dir / CLIP_PRE_FILE
    # Plain types only: open_clip loads it with torch.load(weights_only=True).
    torch.save(
        {"state_dict": state, "clip": clip_name, "stage": "pretrain_clip", "loss": config.loss, "epoch": best_epoch},
        checkpoint,
    )
    history = {"steps": steps, "epochs": epochs, "config": asdict(config)}
    (out_dir / "history.json").write_text(json.dumps(history, indent=2))
    plot_stage_curves(
        steps,
        epochs,
        out_dir / "loss_curve.png",
        f"CLIP contrastive pre-training ({config.loss})",
        ("text_to_image_top1", "image_to_text_top1"),
        "top-1 retrieval",
    )
    return StageResult(checkpoint, best_epoch, scores, history, time.perf_counter() - started)


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
    total = _total_steps(len(train_loader), config.epochs, config.max_steps)
    steps: list[dict[str, float]] = []
    epochs: list[dict[str, float]] = []
    best: tuple[float, int, dict, dict[str, float]] | None = None
    started = time.perf_counter()
    bar = progress_bar(total=total, desc=f"pretrain {kind} (binary)", disable=not progress, unit="step")
    for epoch in range(1, config.epochs + 1):
        if len(steps) >= total:
            break
        model.train()
        for batch in train_loader:
            if len(steps) >= total:
                break
            loss = F.cross_entropy(binary_logits(model, kind, batch), batch.labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps.append({"step": len(steps) + 1, "epoch": epoch, "loss": loss.item()})
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}", refresh=False)
        record = {
            "epoch": epoch,
            "step": len(steps),
            "train_loss": float(np.mean([s["loss"] for s in steps if s["epoch"] == epoch])),
        }
        if val_loader is not None:
            record.update(evaluate_binary(model, kind, val_loader))
        epochs.append(record)
        log(
            f"[pretrain {kind}] epoch {epoch}: "
            + "  ".join(f"{k} {v:.4f}" for k, v in record.items() if k not in ("epoch", "step"))
        )
        key = record["val_f1"] if val_loader is not None else float(epoch)
        if best is None or key > best[0]:
            best = (key, epoch, copy.deepcopy(model.state_dict()), record)
    bar.close()
    assert best is not None, "no epoch ran"
    _, best_epoch, state, scores = best
    model.load_state_dict(state)
    model.eval()
    checkpoint = save_checkpoint(
        out_dir / "checkpoint.pt",
        model,
        kind,
        clip_name,
        model_config,
        {
            "stage": "pretrain_uni",
            "tasks": [HATEFUL.name],
            "epoch": best_epoch,
            "scores": scores,
            "train_config": asdict(config),
        },
    )
    history = {"steps": steps, "epochs": epochs, "config": asdict(config)}
    (out_dir / "history.json").write_text(json.dumps(history, indent=2))
    plot_stage_curves(
        steps,
        epochs,
        out_dir / "loss_curve.png",
        f"{kind}: binary pre-training",
        ("val_accuracy", "val_f1", "val_auroc"),
        "validation",
    )
    return StageResult(checkpoint, best_epoch, scores, history, time.perf_counter() - started)


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
    (out_dir / "pretrain_uni.json").write_text(
        json.dumps(
            {
                "clip": clip_name,
                "pretrained": pretrained,
                "models": {
                    k: {"checkpoint": f"{k}/checkpoint.pt", "best_epoch": r.best_epoch, "validation": r.scores}
                    for k, r in results.items()
                },
            },
            indent=2,
        )
    )
    return results


# --- helpers --------------------------------------------------------------------------------------


def _total_steps(steps_per_epoch: int, epochs: int, max_steps: int | None) -> int:
    total = steps_per_epoch * epochs
    return total if max_steps is None else min(total, max_steps)


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
