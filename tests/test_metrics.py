import numpy as np
import pytest
from sklearn.metrics import f1_score

from training.metrics import (
    character_error_rate,
    confusion_matrix,
    edit_distance,
    folded_text,
    memotion_scores,
    weighted_f1,
)


@pytest.mark.parametrize("seed", range(5))
def test_weighted_f1_equals_sklearn(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 4, 200)
    y_pred = np.where(rng.random(200) < 0.5, y_true, rng.integers(0, 4, 200))
    assert weighted_f1(y_true, y_pred, 4) == pytest.approx(
        f1_score(y_true, y_pred, average="weighted", zero_division=0)
    )


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
    assert scores["task_c"] == pytest.approx(np.mean([f1_score(truth[h], pred[h], average="weighted") for h in heads]))
    assert scores["task_b"] == pytest.approx(
        np.mean([f1_score(truth[h] > 0, pred[h] > 0, average="weighted") for h in heads])
    )
    assert scores["task_b_humorous"] == pytest.approx(
        f1_score(truth["humour"] > 0, pred["humour"] > 0, average="weighted")
    )
    perfect = memotion_scores(truth, truth)
    assert perfect["task_a"] == perfect["task_b"] == perfect["task_c"] == 1.0


def test_per_class_report_equals_sklearn():
    from sklearn.metrics import precision_recall_fscore_support

    from training.metrics import per_class_report

    rng = np.random.default_rng(1)
    sizes = {"sentiment": 3, "humour": 4, "sarcasm": 4, "offensive": 4, "motivational": 2}
    truth = {k: rng.integers(0, n, 150) for k, n in sizes.items()}
    pred = {k: np.where(rng.random(150) < 0.6, truth[k], rng.integers(0, n, 150)) for k, n in sizes.items()}
    pred["offensive"][pred["offensive"] == 3] = 2  # a class never predicted: precision 0, no warning
    report = per_class_report(truth, pred)
    for head, n in sizes.items():
        p, r, f, s = precision_recall_fscore_support(truth[head], pred[head], labels=range(n), zero_division=0)
        classes = list(report[head]["classes"].values())
        assert [c["precision"] for c in classes] == pytest.approx(p)
        assert [c["recall"] for c in classes] == pytest.approx(r)
        assert [c["f1"] for c in classes] == pytest.approx(f)
        assert [c["support"] for c in classes] == list(s)
        assert report[head]["weighted_f1"] == pytest.approx(
            memotion_scores(truth, pred)["task_a" if head == "sentiment" else f"task_c_{head}"]
        )
    assert list(report["task_b_humorous"]["classes"]) == ["not_humorous", "humorous"]
    assert report["task_b_humorous"]["weighted_f1"] == pytest.approx(
        f1_score(truth["humour"] > 0, pred["humour"] > 0, average="weighted")
    )


def test_task_b_can_be_decided_otherwise_than_from_task_c():
    truth = {
        "sentiment": np.array([0, 1]),
        "humour": np.array([0, 2]),
        "sarcasm": np.array([1, 0]),
        "offensive": np.array([0, 0]),
        "motivational": np.array([1, 1]),
    }
    pred = {k: np.zeros(2, dtype=int) for k in truth}
    present = {"humour": np.array([False, True])}  # right although the intensity says absent
    scores = memotion_scores(truth, pred, task_b_pred=present)
    assert scores["task_b_humorous"] == 1.0
    assert memotion_scores(truth, pred)["task_b_humorous"] < 1.0
    assert scores["task_c_humour"] == memotion_scores(truth, pred)["task_c_humour"]


def test_edit_distance_counts_one_per_insertion_deletion_and_substitution():
    assert edit_distance("kitten", "sitting") == 3  # k->s, e->i, +g
    assert edit_distance("", "abc") == 3 and edit_distance("abc", "") == 3 and edit_distance("abc", "abc") == 0


def test_character_error_rate_folds_case_punctuation_and_spacing_before_comparing():
    assert character_error_rate("When the CODE, finally compiles!", "when the code finally compiles") == 0.0
    assert character_error_rate("whon", "when") == pytest.approx(1 / 4)
    assert character_error_rate("anything", "") == len("anything")  # over max(1, 0)
    assert folded_text("Ｆｕｌｌ-width ＩＩ") == "fullwidthii"  # NFKC
