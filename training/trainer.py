"""One training loop for every model kind: AdamW, CE for Task A, focal loss for Task C, gradient
blending across a multi-branch model's branches (fixed or OGR-estimated weights), PMR on models with
two encoders, validation weighted F1 each epoch, best checkpoint kept.

Writes into ``out_dir``: ``checkpoint.pt``, ``history.json`` (per epoch: loss, validation F1, blend
weights, mean rho), ``per_class_report.json``, ``val_probabilities.npz``, ``training_curves.png``,
``confusion_matrices.png``; with gradient blending ``gradient_blending.json`` + ``.png``; with PMR
(or its monitor) ``pmr_rho.json`` (rho, beta, gamma per step and task) + ``pmr_rho.png``.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from memotion.labels import ALL_TASKS, TASK_B_OUTPUT
from memotion.progress import progress_bar
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
    generator = torch.Generator().manual_seed(config.seed)
    alphas = [class_balanced_alpha(c) for c in class_counts(train)] if config.focal_alpha else None
    prediction = prediction_branch(kind)

    # Gradient blending applies to models with several branches (CLIP-multi: text, image, multi).
    blend = config.gradient_blending
    multi_branch = hasattr(model, "forward_branches")
    mode = blend.mode if multi_branch else "off"
    estimator: BlendWeightEstimator | None = None
    weights: dict[str, float] = {}
    if mode == "estimated":
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
    elif mode == "fixed":
        weights = normalise_weights(blend.weights)

    # PMR (or just its rho monitor) on models exposing the two encoders' features.
    pmr = config.pmr
    use_pmr = has_encoder_features(model) and (pmr.enabled or pmr.monitor)
    prototypes = Prototypes([t.num_classes for t in ALL_TASKS], pmr.momentum) if use_pmr else None
    pmr_generator = torch.Generator().manual_seed(config.seed + 1)
    rho_steps: list[dict] = []
    if pmr.enabled and not use_pmr:
        log(f"[{kind}] PMR skipped: the model has no encoder_features (see training/factory.py)")

    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(train) // config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    history: list[dict[str, float]] = []
    best: tuple[float, int, dict, dict[str, float], dict[str, np.ndarray]] | None = None
    started = time.perf_counter()
    if estimator is not None:
        estimator.start()
    step = 0
    bar = progress_bar(total=total_steps, desc=f"train {kind}", disable=not progress, unit="step")
    for epoch in range(1, config.epochs + 1):
        if step >= total_steps:
            break
        if estimator is not None:
            weights = estimator.weights
        if prototypes is not None:  # Algorithm 1: prototypes from a fresh subset each epoch (eq. 12)
            subset_size = max(1, round(pmr.subset_fraction * len(train)))
            subset = train.subset(torch.randperm(len(train), generator=pmr_generator)[:subset_size])
            prototypes.update(*encoder_features(model, subset), subset.targets)
        model.train()
        order = torch.randperm(len(train), generator=generator)
        losses: list[float] = []
        epoch_rho: list[tuple[float, ...]] = []
        for start in range(0, len(train), config.batch_size):
            if step >= total_steps:
                break
            batch = train.subset(order[start : start + config.batch_size])
            targets = batch.targets.unbind(dim=1)
            if prototypes is not None:
                branches, (text_z, image_z) = run_branches_and_features(
                    model, kind, batch.input_ids, batch.pixel_values
                )
            else:
                branches = run_branches(model, kind, batch.input_ids, batch.pixel_values, batch.extras)
            if mode == "off":
                loss = multitask_loss(branches[prediction], targets, config.focal_gamma, alphas)
            else:
                loss = gradient_blend(
                    {
                        name: multitask_loss(logits, targets, config.focal_gamma, alphas)
                        for name, logits in branches.items()
                    },
                    weights,
                )
            if prototypes is not None:
                rebalance = pmr_step(prototypes, text_z, image_z, batch.targets, pmr, epoch - 1)
                loss = loss + rebalance.loss
                epoch_rho.append(rebalance.rho)
                rho_steps.append(
                    {
                        "step": step + 1,
                        "epoch": epoch,
                        **{
                            key: dict(zip((t.name for t in ALL_TASKS), values))
                            for key, values in (
                                ("rho", rebalance.rho),
                                ("beta", rebalance.beta),
                                ("gamma", rebalance.gamma),
                            )
                        },
                    }
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            step += 1
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.3f}", refresh=False)
        probabilities = predict_probabilities(model, kind, val)
        scores = {
            **memotion_scores(val.target_columns(), argmax_labels(probabilities)),
            **task_b_direct_scores(val.target_columns(), probabilities),
        }
        entry = {
            "epoch": epoch,
            "step": step,
            "train_loss": float(np.mean(losses)),
            **{f"val_{k}": v for k, v in scores.items()},
            **{f"gb_weight_{name}": w for name, w in weights.items()},
        }
        if epoch_rho:
            # Geometric mean over the epoch's steps and the tasks: rho is a ratio.
            entry["rho_mean"] = float(np.exp(np.mean(np.log(np.clip(epoch_rho, 1e-12, None)))))
        history.append(entry)
        log(
            f"[{kind}] epoch {epoch}: loss {np.mean(losses):.4f}  val F1 task A "
            f"{scores['task_a']:.3f}  task B {scores['task_b']:.3f}  task C {scores['task_c']:.3f}"
            + (f"  GB weights {_fmt(weights)}" if weights else "")
            + (f"  rho {entry['rho_mean']:.3f}" if "rho_mean" in entry else "")
        )
        if on_epoch is not None:
            on_epoch(entry)
        if best is None or selection_score(scores) > best[0]:
            state = copy.deepcopy(model.state_dict())
            best = (selection_score(scores), epoch, state, scores, probabilities)
        if estimator is not None and estimator.end_epoch(epoch):
            log(f"[{kind}] OGR weights after epoch {epoch}: {_fmt(estimator.weights)}")
    bar.close()
    assert best is not None, "no epoch ran"
    _, best_epoch, state, scores, probabilities = best
    model.load_state_dict(state)
    model.eval()
    seconds = time.perf_counter() - started
    save_checkpoint(
        out_dir / "checkpoint.pt",
        model,
        kind,
        clip_name,
        model_config,
        {"scores": scores, "epoch": best_epoch, "train_config": asdict(config)},
    )
    _write_outputs(out_dir, kind, history, val, probabilities, best_epoch, mode, estimator, rho_steps)
    return TrainResult(model, kind, best_epoch, scores, history, probabilities, seconds, dict(weights), rho_steps)


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


def _write_outputs(
    out_dir: Path,
    kind: str,
    history: list[dict[str, float]],
    val: MemeTensors,
    probabilities: dict[str, np.ndarray],
    best_epoch: int,
    mode: str,
    estimator: BlendWeightEstimator | None,
    rho_steps: list[dict],
) -> None:
    write_validation_outputs(out_dir, kind, history, val, probabilities, best_epoch)
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
