"""Memotion training for every model kind: AdamW, CE for Task A, focal loss for Task C, gradient
blending across a multi-branch model's branches (fixed or OGR-estimated weights), PMR on models with
two encoders, validation weighted F1 each epoch, best checkpoint kept. :class:`MemotionStep` is the
strategy training/loop.py's loop runs; ``train_model`` wires them up and writes the outputs.

Writes into ``out_dir``: ``checkpoint.pt``, ``history.json`` (per epoch: loss, validation F1, blend
weights, mean rho), ``per_class_report.json``, ``val_probabilities.npz``, ``training_curves.png``,
``confusion_matrices.png``; with gradient blending ``gradient_blending.json`` + ``.png``; with PMR
(or its monitor) ``pmr_rho.json`` (rho, beta, gamma per step and task) + ``pmr_rho.png``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from memotion.labels import ALL_TASKS, TASK_B_OUTPUT
from training.dataset import MemeTensors, class_counts
from training.factory import (
    ModelConfig,
    has_encoder_features,
    prediction_branch,
    run_branches,
    run_branches_and_features,
    save_checkpoint,
)
from training.gradient_blending import (
    PAPER_WEIGHTS,
    BlendWeightEstimator,
    BranchLosses,
    GBMode,
    GradientBlendConfig,
    normalise_weights,
    split_holdout,
)
from training.loop import EpochResult, LoopResult, StepStats, optimise, run_loop, total_steps
from training.losses import class_balanced_alpha, gradient_blend, multitask_loss
from training.metrics import memotion_scores, per_class_report, selection_score, task_b_direct_scores
from training.plots import plot_blend_weights, plot_confusion_matrices, plot_imbalance_ratio, plot_training_curves
from training.pmr import PMRConfig, Prototypes, pmr_step


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-5
    weight_decay: float = 1e-2
    focal_gamma: float = 2.0
    focal_alpha: bool = False  # per-class alpha from class frequencies (the authors used none)
    task_a_balanced: bool = False  # Task A's CE weighted by inverse class frequency (for macro F1)
    # Gradient blending of a multi-branch model's losses (eq. 7): off, fixed (the authors'
    # searched weights below) or estimated from each branch's OGR (training/gradient_blending.py).
    gb_mode: GBMode = "fixed"
    gb_weights: dict[str, float] = field(default_factory=lambda: dict(PAPER_WEIGHTS))
    gb_holdout_fraction: float = 0.1
    gb_super_epoch: int = 1
    pmr: PMRConfig = field(default_factory=PMRConfig)
    max_steps: int | None = None  # stop early (tests); None trains all epochs
    seed: int = 0

    @property
    def gradient_blending(self) -> GradientBlendConfig:
        return GradientBlendConfig(self.gb_mode, dict(self.gb_weights), self.gb_holdout_fraction, self.gb_super_epoch)


@dataclass
class TrainResult:
    model: nn.Module
    kind: str
    best_epoch: int
    scores: dict[str, float]
    history: list[dict[str, float]]
    val_probabilities: dict[str, np.ndarray]
    seconds: float
    blend_weights: dict[str, float] = field(default_factory=dict)  # the last epoch's weights
    rho_steps: list[dict] = field(default_factory=list)  # PMR: rho, beta, gamma per step


def predict_probabilities(
    model: nn.Module, kind: str, data: MemeTensors, batch_size: int = 64
) -> dict[str, np.ndarray]:
    """Softmax probabilities of the model's prediction branch, per task (and, for a model with a
    direct Task B head, its sigmoid probabilities under TASK_B_OUTPUT)."""
    model.eval()
    branch = prediction_branch(kind)
    names = [t.name for t in ALL_TASKS]
    chunks: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            batch = data.subset(slice(start, start + batch_size))
            logits = run_branches(model, kind, batch.input_ids, batch.pixel_values, batch.extras)[branch]
            for i, task_logits in enumerate(logits):
                name, p = (
                    (names[i], torch.softmax(task_logits, dim=-1))
                    if i < len(names)
                    else (TASK_B_OUTPUT, torch.sigmoid(task_logits))
                )
                chunks.setdefault(name, []).append(p.numpy())
    return {name: np.concatenate(parts) for name, parts in chunks.items()}


def argmax_labels(probabilities: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: p.argmax(axis=-1) for name, p in probabilities.items()}


def branch_losses(
    model: nn.Module,
    kind: str,
    data: MemeTensors,
    focal_gamma: float,
    alphas: list[torch.Tensor] | None,
    batch_size: int = 64,
) -> dict[str, float]:
    """Mean loss of every branch over ``data`` (eval mode, no gradients)."""
    model.eval()
    totals: dict[str, float] = {}
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            batch = data.subset(slice(start, start + batch_size))
            targets = batch.targets.unbind(dim=1)
            for name, logits in run_branches(model, kind, batch.input_ids, batch.pixel_values, batch.extras).items():
                loss = multitask_loss(logits, targets, focal_gamma, alphas).item()
                totals[name] = totals.get(name, 0.0) + loss * len(batch)
    return {name: total / len(data) for name, total in totals.items()}


def encoder_features(model: nn.Module, data: MemeTensors, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """The two encoders' features over ``data`` (eval mode, no gradients), for PMR's prototypes."""
    model.eval()
    text, image = [], []
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            batch = data.subset(slice(start, start + batch_size))
            t, i = model.encoder_features(batch.input_ids, batch.pixel_values)
            text.append(t)
            image.append(i)
    return torch.cat(text), torch.cat(image)


def memotion_validation(
    model: nn.Module, kind: str, val: MemeTensors
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Validation weighted F1 (Task A, B, C; a direct Task B head's too) and the probabilities."""
    probabilities = predict_probabilities(model, kind, val)
    scores = {
        **memotion_scores(val.target_columns(), argmax_labels(probabilities)),
        **task_b_direct_scores(val.target_columns(), probabilities),
    }
    return scores, probabilities


def shuffled_batches(data: MemeTensors, batch_size: int, generator: torch.Generator) -> Iterator[MemeTensors]:
    """One epoch of ``data`` in a fresh random order (drawn now, from ``generator``)."""
    order = torch.randperm(len(data), generator=generator)
    return (data.subset(order[start : start + batch_size]) for start in range(0, len(data), batch_size))


@dataclass
class Blending:
    """Gradient blending during one training: off, fixed weights, or weights an estimator updates."""

    mode: str
    weights: dict[str, float] = field(default_factory=dict)
    estimator: BlendWeightEstimator | None = None


def setup_blending(
    model: nn.Module,
    kind: str,
    train: MemeTensors,
    config: TrainConfig,
    alphas: list[torch.Tensor] | None,
    log: Callable[[str], None],
) -> tuple[MemeTensors, Blending]:
    """Gradient blending applies to models with several branches (CLIP-multi: text, image, multi).
    Estimated weights hold part of ``train`` out; returns the rows left to train on."""
    blend = config.gradient_blending
    mode = blend.mode if hasattr(model, "forward_branches") else "off"
    if mode == "fixed":
        return train, Blending(mode, normalise_weights(blend.weights))
    if mode != "estimated":
        return train, Blending(mode)
    fit_rows, held_rows = split_holdout(
        len(train), blend.holdout_fraction, torch.Generator().manual_seed(config.seed + 2)
    )
    heldout = train.subset(held_rows)
    train = train.subset(fit_rows)
    probe = train.subset(torch.arange(min(len(train), len(heldout))))  # LT on as many rows
    branches = tuple(run_branches(model.eval(), kind, probe.input_ids[:1], probe.pixel_values[:1]))
    estimator = BlendWeightEstimator(
        lambda: BranchLosses(
            branch_losses(model, kind, probe, config.focal_gamma, alphas),
            branch_losses(model, kind, heldout, config.focal_gamma, alphas),
        ),
        branches,
        blend.super_epoch,
    )
    log(
        f"[{kind}] gradient blending: OGR weights estimated every {blend.super_epoch} epoch(s) "
        f"on {len(heldout)} held-out training memes (trained on the other {len(train)})"
    )
    return train, Blending(mode, estimator=estimator)


class PrototypeRebalancing:
    """PMR's state over one training: class prototypes refreshed every epoch, the prototypical
    losses per step, and rho, beta, gamma per step (and rho per epoch) for the logs."""

    def __init__(self, config: PMRConfig, seed: int) -> None:
        self.config = config
        self.prototypes = Prototypes([t.num_classes for t in ALL_TASKS], config.momentum)
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.rho_steps: list[dict] = []
        self.epoch_rho: list[tuple[float, ...]] = []

    def refresh(self, model: nn.Module, train: MemeTensors) -> None:
        """Algorithm 1: prototypes from a fresh subset each epoch (eq. 12)."""
        subset_size = max(1, round(self.config.subset_fraction * len(train)))
        subset = train.subset(torch.randperm(len(train), generator=self.generator)[:subset_size])
        self.prototypes.update(*encoder_features(model, subset), subset.targets)
        self.epoch_rho = []

    def loss(
        self, text_z: torch.Tensor, image_z: torch.Tensor, targets: torch.Tensor, epoch: int, step: int
    ) -> torch.Tensor:
        """PMR's loss on one batch (0 with PMR only monitoring); logs rho, beta, gamma."""
        rebalance = pmr_step(self.prototypes, text_z, image_z, targets, self.config, epoch - 1)
        self.epoch_rho.append(rebalance.rho)
        names = [t.name for t in ALL_TASKS]
        self.rho_steps.append(
            {
                "step": step + 1,
                "epoch": epoch,
                **{
                    key: dict(zip(names, values))
                    for key, values in (("rho", rebalance.rho), ("beta", rebalance.beta), ("gamma", rebalance.gamma))
                },
            }
        )
        return rebalance.loss

    def rho_mean(self) -> float | None:
        """Geometric mean of rho over the epoch's steps and the tasks (rho is a ratio)."""
        if not self.epoch_rho:
            return None
        return float(np.exp(np.mean(np.log(np.clip(self.epoch_rho, 1e-12, None)))))


class MemotionStep:
    """The loop's strategy for the Memotion tasks: AdamW on CE (Task A) + focal (Task C) losses,
    blended over a multi-branch model's branches, plus PMR's losses on models with two encoders."""

    postfix = ("loss",)

    def __init__(
        self,
        model: nn.Module,
        kind: str,
        train: MemeTensors,
        val: MemeTensors,
        config: TrainConfig,
        log: Callable[[str], None] = print,
        on_epoch: Callable[[dict[str, float]], None] | None = None,
    ) -> None:
        self.model, self.kind, self.val, self.config = model, kind, val, config
        self.log, self.on_epoch, self.desc = log, on_epoch, f"train {kind}"
        self.generator = torch.Generator().manual_seed(config.seed)
        self.alphas = [class_balanced_alpha(c) for c in class_counts(train)] if config.focal_alpha else None
        self.task_a_weight = class_balanced_alpha(class_counts(train)[0]) if config.task_a_balanced else None
        self.prediction = prediction_branch(kind)
        self.train, self.blending = setup_blending(model, kind, train, config, self.alphas, log)
        self.pmr = self._pmr(config.pmr)
        # A model with parts that learn at their own rate (bert_text: its pretrained encoder) says so.
        groups = model.optimizer_groups(config.lr) if hasattr(model, "optimizer_groups") else model.parameters()
        self.optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)

    def _pmr(self, pmr: PMRConfig) -> PrototypeRebalancing | None:
        """PMR (or just its rho monitor) on models exposing the two encoders' features."""
        if has_encoder_features(self.model) and (pmr.enabled or pmr.monitor):
            return PrototypeRebalancing(pmr, self.config.seed)
        if pmr.enabled:
            self.log(f"[{self.kind}] PMR skipped: the model has no encoder_features (see training/factory.py)")
        return None

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.train) // self.config.batch_size)

    def begin_epoch(self, epoch: int) -> Iterator[MemeTensors]:
        if self.blending.estimator is not None:
            self.blending.weights = self.blending.estimator.weights
        if self.pmr is not None:
            self.pmr.refresh(self.model, self.train)
        return shuffled_batches(self.train, self.config.batch_size, self.generator)

    def batch_loss(self, batch: MemeTensors, epoch: int, step: int) -> torch.Tensor:
        """The blended multi-task loss of the model's branches (+ PMR's loss)."""
        targets = batch.targets.unbind(dim=1)
        if self.pmr is not None:
            branches, (text_z, image_z) = run_branches_and_features(
                self.model, self.kind, batch.input_ids, batch.pixel_values
            )
        else:
            branches = run_branches(self.model, self.kind, batch.input_ids, batch.pixel_values, batch.extras)
        gamma, alphas = self.config.focal_gamma, self.alphas
        if self.blending.mode == "off":
            loss = multitask_loss(branches[self.prediction], targets, gamma, alphas, self.task_a_weight)
        else:
            losses = {
                name: multitask_loss(logits, targets, gamma, alphas, self.task_a_weight)
                for name, logits in branches.items()
            }
            loss = gradient_blend(losses, self.blending.weights)
        if self.pmr is not None:
            loss = loss + self.pmr.loss(text_z, image_z, batch.targets, epoch, step)
        return loss

    def train_step(self, batch: MemeTensors, epoch: int, step: int) -> StepStats:
        loss = self.batch_loss(batch, epoch, step)
        optimise(loss, self.optimizer)
        return {"loss": loss.item()}

    def validate(self, epoch: int, step: int, stats: list[StepStats]) -> EpochResult:
        scores, probabilities = memotion_validation(self.model, self.kind, self.val)
        entry = {
            "epoch": epoch,
            "step": step,
            "train_loss": float(np.mean([s["loss"] for s in stats])),
            **{f"val_{k}": v for k, v in scores.items()},
            **{f"gb_weight_{name}": w for name, w in self.blending.weights.items()},
        }
        rho = self.pmr.rho_mean() if self.pmr is not None else None
        if rho is not None:
            entry["rho_mean"] = rho
        return EpochResult(entry, selection_score(scores), scores, probabilities)

    def end_epoch(self, epoch: int, result: EpochResult) -> None:
        entry, scores, weights = result.entry, result.scores, self.blending.weights
        self.log(
            f"[{self.kind}] epoch {epoch}: loss {entry['train_loss']:.4f}  val F1 task A "
            f"{scores['task_a']:.3f}  task B {scores['task_b']:.3f}  task C {scores['task_c']:.3f}"
            + (f"  GB weights {_fmt(weights)}" if weights else "")
            + (f"  rho {entry['rho_mean']:.3f}" if "rho_mean" in entry else "")
        )
        if self.on_epoch is not None:
            self.on_epoch(entry)
        estimator = self.blending.estimator
        if estimator is not None and estimator.end_epoch(epoch):
            self.log(f"[{self.kind}] OGR weights after epoch {epoch}: {_fmt(estimator.weights)}")


def save_best(
    out_dir: Path,
    model: nn.Module,
    kind: str,
    clip_name: str,
    model_config: ModelConfig,
    loop: LoopResult,
    config: TrainConfig,
    **meta: object,
) -> None:
    """The best epoch's checkpoint, with its scores, epoch and training config (and ``meta``)."""
    info = {"scores": loop.best.scores, "epoch": loop.best_epoch, "train_config": asdict(config), **meta}
    save_checkpoint(out_dir / "checkpoint.pt", model, kind, clip_name, model_config, info)


def train_model(
    model: nn.Module,
    kind: str,
    train: MemeTensors,
    val: MemeTensors,
    config: TrainConfig,
    out_dir: Path,
    clip_name: str,
    model_config: ModelConfig,
    progress: bool = True,
    log: Callable[[str], None] = print,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train, validate every epoch, keep the best epoch (by Task A + Task C weighted F1).

    ``on_epoch`` gets each epoch's history entry (Ray Tune reports it; training/experiments/tune.py)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    strategy = MemotionStep(model, kind, train, val, config, log, on_epoch)
    estimator = strategy.blending.estimator
    if estimator is not None:
        estimator.start()
    steps = total_steps(strategy.steps_per_epoch, config.epochs, config.max_steps)
    loop = run_loop(model, strategy, config.epochs, steps, progress)
    save_best(out_dir, model, kind, clip_name, model_config, loop, config)
    probabilities, best_epoch = loop.best.outputs, loop.best_epoch
    rho_steps = strategy.pmr.rho_steps if strategy.pmr is not None else []
    mode = strategy.blending.mode
    write_validation_outputs(out_dir, kind, loop.history, val, probabilities, best_epoch)
    _write_balancing_outputs(out_dir, kind, loop.history, mode, estimator, rho_steps)
    weights = dict(strategy.blending.weights)
    model.zero_grad(set_to_none=True)  # the gradients' memory (4 bytes per parameter) back before the next member
    return TrainResult(
        model, kind, best_epoch, loop.best.scores, loop.history, probabilities, loop.seconds, weights, rho_steps
    )


def _fmt(weights: dict[str, float]) -> str:
    return ", ".join(f"{name} {w:.2f}" for name, w in weights.items())


def write_validation_outputs(
    out_dir: Path,
    kind: str,
    history: list[dict[str, float]],
    val: MemeTensors,
    probabilities: dict[str, np.ndarray],
    best_epoch: int,
    how: str = "",
) -> None:
    """What every training loop leaves beside its checkpoint: history, per-class report, validation
    probabilities, training curves and confusion matrices (``how`` annotates the plot titles)."""
    labels = argmax_labels(probabilities)
    (out_dir / "history.json").write_text(json.dumps(history, indent=2))
    (out_dir / "per_class_report.json").write_text(json.dumps(per_class_report(val.target_columns(), labels), indent=2))
    np.savez(out_dir / "val_probabilities.npz", **probabilities)
    suffix = f", {how}" if how else ""
    plot_training_curves(history, out_dir / "training_curves.png", f"{kind}: training{suffix}")
    plot_confusion_matrices(
        val.target_columns(),
        labels,
        out_dir / "confusion_matrices.png",
        f"{kind}: validation (epoch {best_epoch}{suffix})",
    )


def _write_balancing_outputs(
    out_dir: Path,
    kind: str,
    history: list[dict[str, float]],
    mode: str,
    estimator: BlendWeightEstimator | None,
    rho_steps: list[dict],
) -> None:
    """Gradient blending's weights per epoch and PMR's imbalance ratio per step, as JSON and PNG."""
    if mode != "off":
        (out_dir / "gradient_blending.json").write_text(
            json.dumps(
                {
                    "mode": mode,
                    "per_epoch": [{k: v for k, v in h.items() if k.startswith("gb_weight_")} for h in history],
                    "estimates": estimator.log if estimator is not None else [],
                },
                indent=2,
            )
        )
        plot_blend_weights(history, out_dir / "gradient_blending.png", f"{kind}: gradient-blending weights ({mode})")
    if rho_steps:
        (out_dir / "pmr_rho.json").write_text(json.dumps(rho_steps))
        plot_imbalance_ratio(rho_steps, out_dir / "pmr_rho.png", f"{kind}: PMR imbalance ratio rho per step")
