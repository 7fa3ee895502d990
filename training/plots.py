"""Pictures people look at: training curves and confusion matrices, as PNG."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from memotion.labels import ALL_TASKS
from training.metrics import confusion_matrix


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Lay out, write as PNG (100 dpi) and free a figure; returns ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_training_curves(history: Sequence[Mapping[str, float]], path: Path, title: str) -> Path:
    epochs = [h["epoch"] for h in history]
    fig, (loss_ax, f1_ax) = plt.subplots(1, 2, figsize=(10, 4))
    loss_ax.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train loss")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss")
    loss_ax.legend()
    for key in ("task_a", "task_b", "task_c"):
        f1_ax.plot(epochs, [h[f"val_{key}"] for h in history], marker="o", label=f"val {key}")
    f1_ax.set_xlabel("epoch")
    f1_ax.set_ylabel("weighted F1")
    f1_ax.set_ylim(0, 1)
    f1_ax.legend()
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_confusion_matrices(
    y_true: Mapping[str, np.ndarray], y_pred: Mapping[str, np.ndarray], path: Path, title: str
) -> Path:
    fig, axes = plt.subplots(1, len(ALL_TASKS), figsize=(4 * len(ALL_TASKS), 4))
    for ax, spec in zip(axes, ALL_TASKS):
        matrix = confusion_matrix(y_true[spec.name], y_pred[spec.name], spec.num_classes)
        ax.imshow(matrix, cmap="Blues")
        for (row, col), count in np.ndenumerate(matrix):
            ax.text(col, row, str(count), ha="center", va="center", fontsize=8)
        ax.set_xticks(range(spec.num_classes), spec.codes)
        ax.set_yticks(range(spec.num_classes), spec.codes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(spec.name)
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_blend_weights(history: Sequence[Mapping[str, float]], path: Path, title: str) -> Path:
    """Gradient-blending weight of each branch per epoch (keys ``gb_weight_<branch>``)."""
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in sorted({k for h in history for k in h if k.startswith("gb_weight_")}):
        ax.plot(epochs, [h.get(key, np.nan) for h in history], marker="o", label=key.removeprefix("gb_weight_"))
    ax.set_xlabel("epoch")
    ax.set_ylabel("blend weight w_i (eq. 7)")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title(title)
    return save_figure(fig, path)


def plot_imbalance_ratio(steps: Sequence[Mapping], path: Path, title: str) -> Path:
    """PMR's rho (eq. 8) per training step and task, log scale; rho > 1: the text learns faster."""
    fig, ax = plt.subplots(figsize=(8, 4))
    x = [s["step"] for s in steps]
    for task in steps[0]["rho"] if steps else ():
        ax.plot(x, [s["rho"][task] for s in steps], lw=1, label=task)
    ax.axhline(1.0, color="black", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("rho = sum p_text / sum p_image")
    ax.legend(fontsize=8)
    ax.set_title(title)
    return save_figure(fig, path)
