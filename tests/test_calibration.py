"""Decision calibration per head: per-class offsets, the stacker, cross-fitting, the manifest's fields."""

from __future__ import annotations

import numpy as np
import pytest

from memotion.labels import ALL_TASKS
from memotion.manifest import EnsembleEntry, StackerEntry
from memotion.voting import Stacker, combine, decide, decision_scores, mean_scores, stacked_logits
from training.calibration import cross_fitted, fit_offsets, fit_stacker, fold_ids
from training.ensemble_combination import search_combination
from training.ensemble_search import ensemble_predict
from training.metrics import macro_f1


def skewed(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three classes, 60/30/10; the member's probabilities lean to class 0 by a constant log factor."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, n, p=[0.6, 0.3, 0.1])
    logits = rng.normal(0, 1, (n, 3))
    logits[np.arange(n), y] += 1.5
    logits[:, 0] += 1.5
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True), y


def test_decide_adds_the_offsets_to_the_scores_before_the_argmax():
    scores = np.log(np.array([[0.5, 0.3, 0.2], [0.2, 0.2, 0.6]]))
    assert decide(scores).tolist() == [0, 2]
    assert decide(scores, (0.0, 0.6, 0.0)).tolist() == [1, 2]  # log 0.3 + 0.6 > log 0.5
    with pytest.raises(ValueError, match="offsets"):
        decide(scores, (0.0, 1.0))


def test_combine_applies_offsets_to_the_log_mean_and_refuses_them_for_a_vote():
    a, b = np.array([[0.6, 0.4]]), np.array([[0.5, 0.5]])
    assert combine("mean_probability", [a, b]).tolist() == [0]
    assert combine("mean_probability", [a, b], offsets=(0.0, 0.3)).tolist() == [1]  # log .45 + .3 > log .55
    np.testing.assert_allclose(decision_scores("mean_probability", [a, b]), np.log(mean_scores([a, b])))
    with pytest.raises(ValueError, match="no offsets"):
        combine("majority_vote", [a, b], offsets=(0.0, 0.2))
    with pytest.raises(ValueError, match="stacker"):
        combine("stacked_lr", [a, b])


def test_fitted_offsets_raise_macro_f1_and_leave_class_0_at_zero():
    p, y = skewed()
    scores = np.log(p)
    offsets = fit_offsets(scores, y, 3, "macro_f1")
    assert offsets[0] == 0.0 and offsets != (0.0, 0.0, 0.0)
    assert macro_f1(y, decide(scores, offsets), 3) > macro_f1(y, decide(scores), 3) + 0.05


def test_the_stacker_applied_in_numpy_is_scikit_learns_regression():
    from sklearn.linear_model import LogisticRegression

    from memotion.voting import stacker_features

    p, y = skewed()
    q, _ = skewed(seed=1)
    stacker = fit_stacker([p, q], y, 3, balanced=True)
    reference = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000).fit(stacker_features([p, q]), y)
    logits = stacked_logits([p, q], stacker)
    np.testing.assert_allclose(logits, reference.decision_function(stacker_features([p, q])), atol=1e-6)
    binary = fit_stacker([p[:, :2] / p[:, :2].sum(1, keepdims=True)], (y > 0).astype(int), 2, balanced=False)
    assert len(binary.coef) == 2 and len(binary.coef[0]) == 2
    with pytest.raises(ValueError, match="does not fit"):
        stacked_logits([p], stacker)  # fitted on two members


def test_a_class_missing_from_validation_is_never_stacked_into():
    p, y = skewed()
    stacker = fit_stacker([np.c_[p, np.zeros(len(p))]], y, 4, balanced=True)
    assert (decide(stacked_logits([np.c_[p, np.zeros(len(p))]], stacker)) < 3).all()


def test_cross_fitting_predicts_each_row_from_a_fit_without_it():
    ids = fold_ids(23, 5)
    assert sorted(np.bincount(ids).tolist()) == [4, 4, 5, 5, 5]
    seen: list[int] = []

    def fit_predict(train: np.ndarray, held: np.ndarray) -> np.ndarray:
        assert not set(train) & set(held)
        seen.extend(held.tolist())
        return held

    assert cross_fitted(fit_predict, 23).tolist() == list(range(23))
    assert sorted(seen) == list(range(23))


def test_the_search_keeps_offsets_where_they_win_on_held_out_folds():
    p, y = skewed(1200)
    probabilities = {
        "a": {spec.name: np.full((len(y), spec.num_classes), 1 / spec.num_classes) for spec in ALL_TASKS}
        | {"sentiment": p}
    }
    truth = {spec.name: np.zeros(len(y), np.int64) for spec in ALL_TASKS} | {"sentiment": y}
    selection = search_combination(probabilities, truth, "macro_f1", ("mean_probability", "calibrated_mean"))
    assert selection.rule("sentiment") == "mean_probability" and "sentiment" in selection.task_offsets
    assert "humour" not in selection.task_offsets  # constant truth: nothing to gain
    voted, _ = ensemble_predict(probabilities, selection)
    assert (voted["sentiment"] == decide(np.log(p), selection.task_offsets["sentiment"])).all()


STACKER = StackerEntry(coef=((1.0, 0.0, 0.5, 0.0), (0.0, 1.0, 0.0, 0.5)), intercept=(0.0, 0.1))


def calibrated_entry() -> EnsembleEntry:
    """Two members; sentiment by the mean with class offsets, humour by STACKER."""
    return EnsembleEntry(
        members=("a", "b"),
        task_rules={"sentiment": "mean_probability", "humour": "stacked_lr"},
        task_offsets={"sentiment": (0.0, 0.3, -0.2)},
        task_stackers={"humour": STACKER},
    )


def test_manifest_calibration_fields_and_the_fallback_when_a_voter_did_not_run():
    stacker, entry = STACKER, calibrated_entry()
    how = entry.combination_for("humour", ["a", "b"])
    assert how.rule == "stacked_lr" and how.stacker == Stacker(stacker.coef, stacker.intercept)
    assert entry.combination_for("humour", ["b"]).rule == "mean_probability"  # a did not run
    assert entry.combination_for("sentiment", ["a"]).offsets == (0.0, 0.3, -0.2)
    with pytest.raises(ValueError, match="stacker exactly"):
        EnsembleEntry(members=("a",), task_rules={"humour": "stacked_lr"})
    with pytest.raises(ValueError, match="coef must be"):
        EnsembleEntry(members=("a",), task_rules={"humour": "stacked_lr"}, task_stackers={"humour": stacker})
    with pytest.raises(ValueError, match="no task_offsets"):
        EnsembleEntry(members=("a",), task_rules={"humour": "majority_vote"}, task_offsets={"humour": (0.0, 1.0)})


def test_served_voters_name_the_offsets_and_the_stacker():
    from memotion.voters import served_voters

    entry = calibrated_entry()
    assert served_voters(entry, ["sentiment", "humour"])[1:] == [
        "  sentiment <- a + b (mean probability, class offsets +0.0, +0.3, -0.2)",
        "  humour <- a + b (stacked logistic regression fitted on validation)",
    ]
