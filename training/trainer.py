"""One training loop for every model kind: AdamW, CE for Task A, focal loss for Task C, gradient
blending across branches for CLIP-multi, validation weighted F1 each epoch, best checkpoint kept."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from memotion.progress import progress_bar

from memotion.labels import ALL_TASKS
from training.dataset import MemeTensors, class_counts
from training.factory import ModelConfig, prediction_branch, run_branches, save_checkpoint
from training.losses import class_balanced_alpha, gradient_blend, multitask_loss
from training.metrics import memotion_scores, selection_score
from training.plots import plot_confusion_matrices, plot_training_curves


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-5
    weight_decay: float = 1e-2
    focal_gamma: float = 2.0
    focal_alpha: bool = False  # per-class alpha from class frequencies (the authors used none)
    # Gradient blending weights for CLIP-multi (eq. 7); the authors' fixed, searched weights.
    gb_weights: dict[str, float] = field(
        default_factory=lambda: {"text": 0.2, "image": 0.4, "multi": 0.4}
    )
    max_steps: int | None = None  # stop early (tests); None trains all epochs
    seed: int = 0


@dataclass
class TrainResult:
    model: nn.Module
    kind: str
    best_epoch: int
    scores: dict[str, float]
    history: list[dict[str, float]]
    val_probabilities: dict[str, np.ndarray]
    seconds: float


def predict_probabilities(
    model: nn.Module, kind: str, data: MemeTensors, batch_size: int = 64
) -> dict[str, np.ndarray]:
    """Softmax probabilities of the model's prediction branch, per task."""
    model.eval()
    branch = prediction_branch(kind)
    chunks: list[list[np.ndarray]] = [[] for _ in ALL_TASKS]
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            batch = data.subset(slice(start, start + batch_size))
            logits = run_branches(model, kind, batch.input_ids, batch.pixel_values)[branch]
            for i, task_logits in enumerate(logits):
                chunks[i].append(torch.softmax(task_logits, dim=-1).numpy())
    return {t.name: np.concatenate(chunks[i]) for i, t in enumerate(ALL_TASKS)}


def argmax_labels(probabilities: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: p.argmax(axis=-1) for name, p in probabilities.items()}


def train_model(
    model: nn.Module, kind: str, train: MemeTensors, val: MemeTensors, config: TrainConfig,
    out_dir: Path, clip_name: str, model_config: ModelConfig, progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train, validate every epoch, keep the best epoch (by Task A + Task C weighted F1)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    alphas = [class_balanced_alpha(c) for c in class_counts(train)] if config.focal_alpha else None
    steps_per_epoch = -(-len(train) // config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    history: list[dict[str, float]] = []
    best: tuple[float, int, dict, dict[str, float], dict[str, np.ndarray]] | None = None
    started = time.perf_counter()
    step = 0
    bar = progress_bar(total=total_steps, desc=f"train {kind}", disable=not progress, unit="step")
    for epoch in range(1, config.epochs + 1):
        if step >= total_steps:
            break
        model.train()
        order = torch.randperm(len(train), generator=generator)
        losses = []
        for start in range(0, len(train), config.batch_size):
            if step >= total_steps:
                break
            batch = train.subset(order[start : start + config.batch_size])
            targets = batch.targets.unbind(dim=1)
            branches = run_branches(model, kind, batch.input_ids, batch.pixel_values)
            branch_losses = {
                name: multitask_loss(logits, targets, config.focal_gamma, alphas)
                for name, logits in branches.items()
            }
            if len(branch_losses) > 1:
                loss = gradient_blend(branch_losses, config.gb_weights)
            else:
                loss = next(iter(branch_losses.values()))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            step += 1
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.3f}", refresh=False)
        probabilities = predict_probabilities(model, kind, val)
        scores = memotion_scores(val.target_columns(), argmax_labels(probabilities))
        history.append({"epoch": epoch, "step": step, "train_loss": float(np.mean(losses)),
                        **{f"val_{k}": v for k, v in scores.items()}})
        log(f"[{kind}] epoch {epoch}: loss {np.mean(losses):.4f}  val F1 task A "
            f"{scores['task_a']:.3f}  task B {scores['task_b']:.3f}  task C {scores['task_c']:.3f}")
        if best is None or selection_score(scores) > best[0]:
            state = copy.deepcopy(model.state_dict())
            best = (selection_score(scores), epoch, state, scores, probabilities)
    bar.close()
    assert best is not None, "no epoch ran"
    _, best_epoch, state, scores, probabilities = best
    model.load_state_dict(state)
    model.eval()
    seconds = time.perf_counter() - started
    save_checkpoint(out_dir / "checkpoint.pt", model, kind, clip_name, model_config,
                    {"scores": scores, "epoch": best_epoch, "train_config": asdict(config)})
    (out_dir / "history.json").write_text(json.dumps(history, indent=2))
    np.savez(out_dir / "val_probabilities.npz", **probabilities)
    plot_training_curves(history, out_dir / "training_curves.png", f"{kind}: training")
    plot_confusion_matrices(val.target_columns(), argmax_labels(probabilities),
                            out_dir / "confusion_matrices.png", f"{kind}: validation (epoch {best_epoch})")
    return TrainResult(model, kind, best_epoch, scores, history, probabilities, seconds)
