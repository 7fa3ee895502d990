"""Memotion 3 scoring: weighted F1 per task, Task B and Task C averaged over the four emotions.

Pure numpy. The Memotion 3 scorer ranks Task B and Task C by the AVERAGE of the four emotions'
weighted F1; Task B is each emotion's presence (intensity > 0).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

import numpy as np

from memotion.labels import ALL_TASKS, TASK_A, TASK_B_NAMES, TASK_B_OUTPUT, TASK_C


def per_class_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each class's F1 (0 where it is neither true nor predicted), its support in ``y_true``, and
    whether it occurs at all (true or predicted)."""
    confusion = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1).astype(np.float64)
    denom = support + confusion.sum(axis=0)
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return f1, support, denom > 0


def weighted_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Per-class F1 averaged with weights = class support in y_true (sklearn's 'weighted')."""
    if np.asarray(y_true).size == 0:
        return 0.0
    f1, support, _ = per_class_f1(y_true, y_pred, num_classes)
    return float((f1 * support).sum() / support.sum())


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Unweighted mean of the per-class F1 over the classes present in ``y_true`` or ``y_pred``
    (sklearn's ``f1_score(average='macro')``: a class never seen nor predicted is left out)."""
    if np.asarray(y_true).size == 0:
        return 0.0
    f1, _, present = per_class_f1(y_true, y_pred, num_classes)
    return float(f1[present].mean())


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return matrix


def memotion_scores(
    y_true: Mapping[str, np.ndarray],
    y_pred: Mapping[str, np.ndarray],
    task_b_pred: Mapping[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """Weighted F1 for Task A, each Task C head and its Task B emotion, and the two averages.

    Task B is intensity > 0 of the Task C prediction (the paper's rule) unless ``task_b_pred``
    gives the presence per Task C head (an ensemble deciding Task B directly).
    """
    scores = {"task_a": weighted_f1(y_true[TASK_A.name], y_pred[TASK_A.name], TASK_A.num_classes)}
    task_b, task_c = [], []
    for spec in TASK_C:
        true, pred = np.asarray(y_true[spec.name]), np.asarray(y_pred[spec.name])
        c = weighted_f1(true, pred, spec.num_classes)
        present = np.asarray(task_b_pred[spec.name]) if task_b_pred and spec.name in task_b_pred else pred > 0
        b = weighted_f1(true > 0, present, 2)
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


def per_class_report(
    y_true: Mapping[str, np.ndarray],
    y_pred: Mapping[str, np.ndarray],
    task_b_pred: Mapping[str, np.ndarray] | None = None,
) -> dict[str, dict]:
    """Precision, recall, F1 and support per class for every head and Task B emotion, plus each
    head's weighted F1 (sklearn's ``classification_report`` numbers, zero_division=0).

    ``task_b_pred``: Task B presence per Task C head decided otherwise than intensity > 0.
    """
    report: dict[str, dict] = {}
    columns = [
        (spec.name, spec.labels, np.asarray(y_true[spec.name]), np.asarray(y_pred[spec.name])) for spec in ALL_TASKS
    ]
    for spec in TASK_C:
        present = (
            np.asarray(task_b_pred[spec.name])
            if task_b_pred and spec.name in task_b_pred
            else np.asarray(y_pred[spec.name]) > 0
        )
        name = TASK_B_NAMES[spec.name]
        columns.append((f"task_b_{name}", (f"not_{name}", name), np.asarray(y_true[spec.name]) > 0, present))
    for name, labels, true, pred in columns:
        matrix = confusion_matrix(true, pred, len(labels))
        tp = np.diag(matrix).astype(np.float64)
        support = matrix.sum(axis=1).astype(np.float64)
        predicted = matrix.sum(axis=0).astype(np.float64)
        precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
        recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
        denom = precision + recall
        f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
        report[name] = {
            "classes": {
                label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                for label, p, r, f, s in zip(labels, precision, recall, f1, support)
            },
            "weighted_f1": weighted_f1(true, pred, len(labels)),
        }
    return report


def multilabel_f1_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Micro, macro, weighted and samples F1 of a multi-label prediction (PM+MO paper Sec. 4;
    sklearn's definitions with zero_division=0). ``y_true``, ``y_pred``: [N, labels] 0/1."""
    true = np.asarray(y_true, dtype=bool)
    pred = np.asarray(y_pred, dtype=bool)
    tp = (true & pred).sum(axis=0).astype(np.float64)
    true_count = true.sum(axis=0).astype(np.float64)
    pred_count = pred.sum(axis=0).astype(np.float64)

    def f1(tp: np.ndarray, denom: np.ndarray) -> np.ndarray:  # 2 TP / (|y| + |ŷ|)
        return np.divide(2 * tp, denom, out=np.zeros_like(tp, dtype=np.float64), where=denom > 0)

    per_label = f1(tp, true_count + pred_count)
    per_sample = f1(
        (true & pred).sum(axis=1).astype(np.float64), (true.sum(axis=1) + pred.sum(axis=1)).astype(np.float64)
    )  # eq. 7
    support = true_count.sum()
    return {
        "micro": float(f1(np.array([tp.sum()]), np.array([true_count.sum() + pred_count.sum()]))[0]),
        "macro": float(per_label.mean()) if per_label.size else 0.0,
        "weighted": float((per_label * true_count).sum() / support) if support else 0.0,
        "samples": float(per_sample.mean()) if per_sample.size else 0.0,
    }


def task_b_direct_scores(
    y_true: Mapping[str, np.ndarray],
    probabilities: Mapping[str, np.ndarray],
    threshold: float = 0.5,
) -> dict[str, float]:
    """For a model with a direct Task B head (``probabilities[TASK_B_OUTPUT]``, [N, 4] sigmoid):
    ``task_b_direct_{micro,macro,weighted,samples}`` F1 of presence = probability > threshold, and
    ``task_b_direct`` = the Memotion 3 Task B score (mean over the emotions of the weighted F1).
    Empty for a model without one."""
    if TASK_B_OUTPUT not in probabilities:
        return {}
    true = np.stack([np.asarray(y_true[spec.name]) > 0 for spec in TASK_C], axis=1)
    pred = np.asarray(probabilities[TASK_B_OUTPUT]) > threshold
    scores = {f"task_b_direct_{k}": v for k, v in multilabel_f1_scores(true, pred).items()}
    scores["task_b_direct"] = float(np.mean([weighted_f1(true[:, j], pred[:, j], 2) for j in range(len(TASK_C))]))
    return scores


def folded_text(text: str) -> str:
    """Lower case, NFKC, punctuation and spacing folded away: only letters and digits remain."""
    return re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", text).lower())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions, one each."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def character_error_rate(hypothesis: str, reference: str) -> float:
    """OCR's character error rate: edit distance of the folded texts over the reference's length."""
    hyp, ref = folded_text(hypothesis), folded_text(reference)
    return edit_distance(hyp, ref) / max(1, len(ref))
