"""Pictures people look at: training curves and confusion matrices, as PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from memotion.labels import ALL_TASKS  # noqa: E402
from training.metrics import confusion_matrix  # noqa: E402


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
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


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
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
