"""Decision calibration per head, fitted on validation: per-class offsets on the combined
log-probabilities, and a stacker (multinomial logistic regression over the members'
log-probabilities). The gateway applies both with memotion.voting (``decide``, ``stacked_logits``).

Both are scored on validation by K-fold cross-fitting (fit on K-1 folds, predict the held-out fold),
so a calibrated rule competes with the uncalibrated ones on memes it was not fitted on. Pure numpy
(the stacker's fit: scikit-learn).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from memotion.voting import Stacker, decide, stacked_logits, stacker_features
from training.ensemble_search import Objective, objective_score

OFFSET_GRID = tuple(np.round(np.arange(-2.0, 2.0001, 0.1), 1))  # per-class offsets searched (log units)
OFFSET_PASSES = 2  # coordinate-search sweeps over the classes
FOLDS = 5
STACKER_C = 1.0  # inverse L2 strength of the stacker's logistic regression


def fit_offsets(
    scores: np.ndarray,
    y_true: np.ndarray,
    num_classes: int,
    objective: Objective,
    grid: Sequence[float] = OFFSET_GRID,
    passes: int = OFFSET_PASSES,
) -> tuple[float, ...]:
    """Per-class offsets b (b_0 = 0) maximising ``objective`` F1 of argmax(scores + b) on ``y_true``,
    by coordinate search: class by class, the grid value with the best F1 (first best; the current
    value kept on ties), ``passes`` sweeps. ``scores``: [N, C] log-probabilities or logits."""
    offsets = np.zeros(num_classes)
    best = objective_score(objective, y_true, decide(scores, offsets), num_classes)
    for _ in range(passes):
        for c in range(1, num_classes):
            for value in grid:
                trial = offsets.copy()
                trial[c] = value
                score = objective_score(objective, y_true, decide(scores, trial), num_classes)
                if score > best:
                    best, offsets = score, trial
    return tuple(float(b) for b in offsets)


def fit_stacker(
    probabilities: Sequence[np.ndarray], y_true: np.ndarray, num_classes: int, balanced: bool, c: float = STACKER_C
) -> Stacker:
    """Multinomial LR on the members' log-probabilities (``balanced``: classes weighted by inverse
    frequency, for macro F1). Classes absent from ``y_true`` get a large negative intercept."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    features, y = stacker_features(probabilities), np.asarray(y_true)
    present = np.unique(y)
    coef = np.zeros((num_classes, features.shape[1]))
    intercept = np.full(num_classes, -30.0)
    if present.size == 1:
        intercept[present[0]] = 0.0
    else:
        model = LogisticRegression(C=c, class_weight="balanced" if balanced else None, max_iter=1000)
        with threadpool_limits(1):  # a small problem: BLAS threads only contend
            model.fit(features, y)
        rows = model.coef_ if present.size > 2 else np.vstack([-model.coef_ / 2, model.coef_ / 2])
        bias = model.intercept_ if present.size > 2 else np.array([-model.intercept_[0] / 2, model.intercept_[0] / 2])
        coef[present], intercept[present] = rows, bias
    return Stacker(tuple(map(tuple, coef.tolist())), tuple(intercept.tolist()))


def fold_ids(n: int, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """A fold index per row: a fixed random permutation cut into ``folds`` near-equal parts."""
    ids = np.empty(n, dtype=np.int64)
    for fold, rows in enumerate(np.array_split(np.random.default_rng(seed).permutation(n), folds)):
        ids[rows] = fold
    return ids


def cross_fitted(fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray], n: int, folds: int = FOLDS) -> np.ndarray:
    """Out-of-fold predictions: ``fit_predict(train_rows, held_out_rows)`` -> labels of the held-out rows."""
    ids, out = fold_ids(n, min(folds, n)), np.zeros(n, dtype=np.int64)
    for fold in range(min(folds, n)):
        held = np.flatnonzero(ids == fold)
        out[held] = fit_predict(np.flatnonzero(ids != fold), held)
    return out


def offsets_cross_score(
    scores: np.ndarray, y_true: np.ndarray, num_classes: int, objective: Objective, folds: int = FOLDS
) -> float:
    """``objective`` F1 of offsets fitted on the other folds, on each held-out fold."""

    def fit_predict(train: np.ndarray, held: np.ndarray) -> np.ndarray:
        offsets = fit_offsets(scores[train], y_true[train], num_classes, objective)
        return decide(scores[held], offsets)

    return objective_score(objective, y_true, cross_fitted(fit_predict, len(y_true), folds), num_classes)


def stacker_cross_score(
    probabilities: Sequence[np.ndarray], y_true: np.ndarray, num_classes: int, objective: Objective, folds: int = FOLDS
) -> float:
    """``objective`` F1 of stackers fitted on the other folds, on each held-out fold."""
    balanced = objective == "macro_f1"

    def fit_predict(train: np.ndarray, held: np.ndarray) -> np.ndarray:
        stacker = fit_stacker([p[train] for p in probabilities], y_true[train], num_classes, balanced)
        return decide(stacked_logits([p[held] for p in probabilities], stacker))

    return objective_score(objective, y_true, cross_fitted(fit_predict, len(y_true), folds), num_classes)
