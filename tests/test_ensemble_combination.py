"""Combination rules (memotion/voting.py) and their search per head on validation
(training/ensemble_combination.py), the manifest's per-head rules and what the gateway does with them."""

from __future__ import annotations

import numpy as np
import pytest

from memotion.labels import ALL_TASKS
from memotion.manifest import EnsembleEntry
from memotion.voting import combine, majority_vote, mean_probability
from training.ensemble_combination import best_weights, search_combination, weight_grid
from training.ensemble_search import ensemble_predict, objective_score


def test_mean_probability_is_the_argmax_of_the_weighted_mean():
    a = np.array([[0.6, 0.4], [0.1, 0.9]])
    b = np.array([[0.0, 1.0], [0.4, 0.6]])
    # equal weights: row 0 mean (0.3, 0.7) -> 1; row 1 (0.25, 0.75) -> 1
    assert mean_probability([a, b]).tolist() == [1, 1]
    # weights 0.9 / 0.1: row 0 (0.54, 0.46) -> 0; row 1 (0.13, 0.87) -> 1
    assert mean_probability([a, b], [0.9, 0.1]).tolist() == [0, 1]
    assert mean_probability([a, b], [9, 1]).tolist() == [0, 1]  # only the ratio counts


def test_mean_probability_refuses_bad_weights():
    p = [np.eye(2), np.eye(2)]
    for weights in ([1.0], [-1.0, 2.0], [0.0, 0.0]):
        with pytest.raises(ValueError):
            mean_probability(p, weights)
    with pytest.raises(ValueError):
        mean_probability([])


def test_combine_dispatches_by_rule():
    p = [np.array([[0.9, 0.1]]), np.array([[0.4, 0.6]]), np.array([[0.45, 0.55]])]
    assert combine("majority_vote", p).tolist() == majority_vote(p).tolist() == [1]  # two votes for 1
    assert combine("mean_probability", p).tolist() == [0]  # mean 0.583 for 0
    with pytest.raises(ValueError, match="unknown combination rule"):
        combine("stacking", p)


def test_weight_grid_covers_the_simplex():
    grid = weight_grid(3, 0.5)
    assert sorted(grid) == sorted(
        [(0, 0, 1), (0, 0.5, 0.5), (0, 1, 0), (0.5, 0, 0.5), (0.5, 0.5, 0), (1, 0, 0)]  # type: ignore[list-item]
    )
    assert len(weight_grid(2)) == 11 and all(abs(sum(w) - 1) < 1e-9 for w in weight_grid(4))


def _members(n: int, seed: int = 0):
    """Two members per head: 'good' (right 80% of the time, confident) and 'hedge' (right 60%, soft)."""
    rng = np.random.default_rng(seed)
    truth, good, hedge = {}, {}, {}
    for spec in ALL_TASKS:
        y = rng.integers(0, spec.num_classes, n)
        truth[spec.name] = y
        for out, accuracy, confidence in ((good, 0.8, 0.9), (hedge, 0.6, 0.5)):
            right = rng.random(n) < accuracy
            pred = np.where(right, y, (y + 1) % spec.num_classes)
            p = np.full((n, spec.num_classes), (1 - confidence) / (spec.num_classes - 1))
            p[np.arange(n), pred] = confidence
            out[spec.name] = p
    return {"good": good, "hedge": hedge}, truth


def test_search_keeps_the_best_rule_per_head_and_never_loses_to_the_paper():
    probabilities, truth = _members(400)
    for objective in ("weighted_f1", "macro_f1"):
        selection = search_combination(probabilities, truth, objective)  # type: ignore[arg-type]
        paper = search_combination(probabilities, truth, objective, rules=("majority_vote",))  # type: ignore[arg-type]
        assert selection.objective == objective
        voted, _ = ensemble_predict(probabilities, selection)
        paper_voted, _ = ensemble_predict(probabilities, paper)
        for spec in ALL_TASKS:
            ours = objective_score(objective, truth[spec.name], voted[spec.name], spec.num_classes)  # type: ignore[arg-type]
            theirs = objective_score(objective, truth[spec.name], paper_voted[spec.name], spec.num_classes)  # type: ignore[arg-type]
            assert ours >= theirs - 1e-12
            assert selection.rule(spec.name) in ("majority_vote", "mean_probability", "stacked_lr")
            weights = selection.task_weights.get(spec.name)
            if weights is not None:
                assert set(weights) == set(selection.task_members[spec.name])


def test_searched_weights_score_at_least_each_member_and_the_plain_mean():
    probabilities, truth = _members(600, seed=3)
    head = ALL_TASKS[0]
    weights, score = best_weights(
        {m: p[head.name] for m, p in probabilities.items()},
        truth[head.name],
        head.num_classes,
        ["good", "hedge"],
        "macro_f1",
    )
    assert abs(sum(weights.values()) - 1) < 1e-9
    plain = mean_probability([p[head.name] for p in probabilities.values()])
    assert score >= objective_score("macro_f1", truth[head.name], plain, head.num_classes)
    alone = objective_score("macro_f1", truth[head.name], probabilities["good"][head.name].argmax(1), head.num_classes)
    assert score >= alone


def test_a_mean_rule_wins_where_a_vote_cannot():
    """Three members, each confidently right on a third of the memes and softly wrong elsewhere:
    any vote is wrong where two are wrong, the mean probability of all three is always right."""
    n, classes = 300, 3
    y = np.arange(n) % 2
    members = {}
    for k, name in enumerate("abc"):
        confident = np.arange(n) % 3 == k
        p = np.full((n, classes), 0.05)
        p[np.arange(n), np.where(confident, y, 1 - y)] = np.where(confident, 0.9, 0.5)
        p[np.arange(n), np.where(confident, 1 - y, y)] = np.where(confident, 0.05, 0.45)
        members[name] = p
    probabilities = {
        m: {spec.name: np.full((n, spec.num_classes), 1 / spec.num_classes) for spec in ALL_TASKS} | {"sentiment": p}
        for m, p in members.items()
    }
    truth = {spec.name: np.zeros(n, np.int64) for spec in ALL_TASKS} | {"sentiment": y}
    selection = search_combination(probabilities, truth, "macro_f1")
    voted, _ = ensemble_predict(probabilities, selection)
    assert selection.rule("sentiment") == "mean_probability"
    assert (voted["sentiment"] == y).all()
    paper, _ = ensemble_predict(probabilities, search_combination(probabilities, truth, "macro_f1", ("majority_vote",)))
    assert (paper["sentiment"] == y).mean() < 0.7


def test_manifest_rules_and_weights():
    entry = EnsembleEntry(
        members=("a", "b"),
        task_members={"sentiment": ("a", "b")},
        task_rules={"sentiment": "mean_probability"},
        task_weights={"sentiment": {"a": 0.7, "b": 0.3}},
        objective="macro_f1",
    )
    assert entry.rule_for("sentiment") == "mean_probability" and entry.rule_for("humour") == "majority_vote"
    assert entry.weights_for("sentiment", ["a", "b"]) == [0.7, 0.3]
    assert entry.weights_for("sentiment", ["b"]) == [0.3]  # only the members that ran
    assert entry.weights_for("humour", ["a", "b"]) is None
    with pytest.raises(ValueError, match="task_weights"):
        EnsembleEntry(members=("a", "b"), task_weights={"sentiment": {"a": 1.0}})  # b votes too: no weight
    with pytest.raises(ValueError):
        EnsembleEntry(members=("a",), task_rules={"sentiment": "stacking"})  # type: ignore[dict-item]


def test_selection_warnings_score_the_searched_voters_by_their_rule():
    """A weighted mean of a (right, unsure) and b (confidently wrong) beats every member voting by
    far more than the noise on 400 memes; scored as a majority vote it would not (a false warning)."""
    from training.ensemble_evidence import selection_warnings

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 400)
    wrong = (truth + 1) % 3
    a = np.full((400, 3), 0.3)
    a[np.arange(400), truth] = 0.4
    b = np.full((400, 3), 0.05)
    b[np.arange(400), wrong] = 0.9
    c = rng.dirichlet(np.ones(3), 400)
    probabilities = {"a": {"sentiment": a}, "b": {"sentiment": b}, "c": {"sentiment": c}}
    y_true = {"sentiment": truth}
    chosen = {"sentiment": ("a", "b")}
    rules, weights = {"sentiment": "mean_probability"}, {"sentiment": {"a": 0.9, "b": 0.1}}
    assert selection_warnings(probabilities, y_true, chosen, rules, weights, "macro_f1") == []
    assert len(selection_warnings(probabilities, y_true, chosen)) == 1  # their majority vote: undecided


def test_served_voters_say_each_heads_combination_rule():
    from memotion.voters import served_voters

    ensemble = EnsembleEntry(
        members=("bert_text", "tfidf_lr"),
        task_rules={"humour": "mean_probability", "sarcasm": "mean_probability"},
        task_weights={"humour": {"bert_text": 0.6, "tfidf_lr": 0.4}},
    )
    lines = served_voters(ensemble, ["humour", "sarcasm", "offensive"])
    assert lines[1:] == [
        "  humour <- bert_text + tfidf_lr (weighted mean probability: bert_text 0.60, tfidf_lr 0.40)",
        "  sarcasm <- bert_text + tfidf_lr (mean probability)",
        "  offensive <- bert_text + tfidf_lr",
    ]
