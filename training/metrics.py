"""Memotion 3 scoring: weighted F1 per task, Task B and Task C averaged over the four emotions.

Pure numpy. The Memotion 3 scorer ranks Task B and Task C by the AVERAGE of the four emotions'
weighted F1; Task B is each emotion's presence (intensity > 0).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from memotion.labels import TASK_A, TASK_B_NAMES, TASK_C


def weighted_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Per-class F1 averaged with weights = class support in y_true (sklearn's 'weighted')."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.size == 0:
        return 0.0
    confusion = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1).astype(np.float64)
    predicted = confusion.sum(axis=0).astype(np.float64)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float((f1 * support).sum() / support.sum())


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return matrix


def memotion_scores(
    y_true: Mapping[str, np.ndarray], y_pred: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """Weighted F1 for Task A, each Task C head and its Task B emotion, and the two averages."""
    scores = {"task_a": weighted_f1(y_true[TASK_A.name], y_pred[TASK_A.name], TASK_A.num_classes)}
    task_b, task_c = [], []
    for spec in TASK_C:
        true, pred = np.asarray(y_true[spec.name]), np.asarray(y_pred[spec.name])
        c = weighted_f1(true, pred, spec.num_classes)
        b = weighted_f1(true > 0, pred > 0, 2)
        scores[f"task_c_{spec.name}"] = c
        scores[f"task_b_{TASK_B_NAMES[spec.name]}"] = b
        task_c.append(c)
        task_b.append(b)
    scores["task_b"] = float(np.mean(task_b))
    scores["task_c"] = float(np.mean(task_c))
    return scores


def selection_score(scores: Mapping[str, float]) -> float:
    """One number to pick checkpoints on validation: mean of Task A and Task C."""
    return 0.5 * (scores["task_a"] + scores["task_c"])
