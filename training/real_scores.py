"""Scores for real meme sets: macro F1 (SemEval-2020 Task 8) and weighted F1 (Memotion 3) per task.

Memotion 1 has Task A, Task B (four emotions present or not, from the intensity > 0) and Task C
(four intensities); B and C are averaged over the four emotions, as both challenges rank them.
CM-Off-Meme has Task A and two binary tasks (sarcastic, offensive), read from the sarcasm and
offensive heads as presence (class > 0). Pure numpy.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from memotion.labels import TASK_A, TASK_C
from training.metrics import macro_f1, weighted_f1

MEASURES = ("macro", "weighted")
# Data set kind -> the score keys its table shows, in order.
TASK_KEYS = {
    "memotion": ("task_a", "task_b", "task_c"),
    "binary": ("task_a", "sarcastic", "offensive"),
}
BINARY_HEADS = {"sarcastic": "sarcasm", "offensive": "offensive"}


def f1_both(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict[str, float]:
    return {"macro": macro_f1(y_true, y_pred, num_classes), "weighted": weighted_f1(y_true, y_pred, num_classes)}


def score_predictions(
    kind: str, y_true: Mapping[str, np.ndarray], y_pred: Mapping[str, np.ndarray]
) -> dict[str, dict[str, float]]:
    """measure -> score key -> F1 for a data set ``kind`` (``memotion`` or ``binary``); ``y_true``
    and ``y_pred`` hold class indices per head (the Memotion head names)."""
    scores: dict[str, dict[str, float]] = {m: {} for m in MEASURES}

    def put(key: str, values: dict[str, float]) -> None:
        for measure in MEASURES:
            scores[measure][key] = values[measure]

    put("task_a", f1_both(y_true[TASK_A.name], y_pred[TASK_A.name], TASK_A.num_classes))
    if kind == "binary":
        for key, head in BINARY_HEADS.items():
            put(key, f1_both(np.asarray(y_true[head]) > 0, np.asarray(y_pred[head]) > 0, 2))
        return scores
    if kind != "memotion":
        raise ValueError(f"unknown data set kind {kind!r}; choose from {sorted(TASK_KEYS)}")
    parts_b, parts_c = [], []
    for spec in TASK_C:
        true, pred = np.asarray(y_true[spec.name]), np.asarray(y_pred[spec.name])
        c = f1_both(true, pred, spec.num_classes)
        b = f1_both(true > 0, pred > 0, 2)
        put(f"task_c_{spec.name}", c)
        put(f"task_b_{spec.name}", b)
        parts_b.append(b)
        parts_c.append(c)
    put("task_b", {m: float(np.mean([p[m] for p in parts_b])) for m in MEASURES})
    put("task_c", {m: float(np.mean([p[m] for p in parts_c])) for m in MEASURES})
    return scores
