import numpy as np
import pytest
from sklearn.metrics import f1_score

from training.metrics import confusion_matrix, memotion_scores, weighted_f1


@pytest.mark.parametrize("seed", range(5))
def test_weighted_f1_equals_sklearn(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 4, 200)
    y_pred = np.where(rng.random(200) < 0.5, y_true, rng.integers(0, 4, 200))
    assert weighted_f1(y_true, y_pred, 4) == pytest.approx(
        f1_score(y_true, y_pred, average="weighted", zero_division=0))


def test_weighted_f1_by_hand():
    # class 0: tp=1, support 2, predicted 1 -> F1 2/3; class 1: tp=1, support 1, predicted 2 -> 2/3.
    assert weighted_f1(np.array([0, 0, 1]), np.array([0, 1, 1]), 2) == pytest.approx(2 / 3)


def test_confusion_matrix_rows_are_truth():
    matrix = confusion_matrix(np.array([0, 0, 1]), np.array([1, 1, 1]), 2)
    assert matrix.tolist() == [[0, 2], [0, 1]]


def test_memotion_scores_average_the_four_emotions():
    rng = np.random.default_rng(0)
    sizes = {"sentiment": 3, "humour": 4, "sarcasm": 4, "offensive": 4, "motivational": 2}
    truth = {k: rng.integers(0, n, 100) for k, n in sizes.items()}
    pred = {k: rng.integers(0, n, 100) for k, n in sizes.items()}
    scores = memotion_scores(truth, pred)
    heads = ["humour", "sarcasm", "offensive", "motivational"]
    assert scores["task_c"] == pytest.approx(np.mean([
        f1_score(truth[h], pred[h], average="weighted") for h in heads]))
    assert scores["task_b"] == pytest.approx(np.mean([
        f1_score(truth[h] > 0, pred[h] > 0, average="weighted") for h in heads]))
    assert scores["task_b_humorous"] == pytest.approx(
        f1_score(truth["humour"] > 0, pred["humour"] > 0, average="weighted"))
    perfect = memotion_scores(truth, truth)
    assert perfect["task_a"] == perfect["task_b"] == perfect["task_c"] == 1.0
