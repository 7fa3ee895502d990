"""memotion.voting: majority vote over ensemble members, ties by mean probability, then lowest index."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from memotion.voting import majority_vote, vote_counts


def _p(*rows: list[float]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float64)


def test_majority_wins_over_confidence() -> None:
    # Two members say class 0 weakly, one says class 2 very confidently: votes beat probability.
    members = [_p([0.40, 0.30, 0.30]), _p([0.45, 0.35, 0.20]), _p([0.00, 0.01, 0.99])]
    assert majority_vote(members).tolist() == [0]


def test_single_member_is_its_argmax() -> None:
    probabilities = _p([0.1, 0.7, 0.2], [0.5, 0.2, 0.3], [0.2, 0.2, 0.6])
    assert majority_vote([probabilities]).tolist() == [1, 0, 2]


def test_rows_are_independent() -> None:
    a = _p([0.9, 0.1], [0.2, 0.8], [0.6, 0.4])
    b = _p([0.8, 0.2], [0.3, 0.7], [0.1, 0.9])
    c = _p([0.3, 0.7], [0.9, 0.1], [0.2, 0.8])
    assert majority_vote([a, b, c]).tolist() == [0, 1, 1]


def test_tie_in_votes_goes_to_higher_mean_probability() -> None:
    # One vote each for classes 0, 1 and 2; class 2 has the highest mean probability.
    members = [_p([0.50, 0.25, 0.25]), _p([0.10, 0.45, 0.45 - 1e-3]), _p([0.00, 0.10, 0.90])]
    mean = np.mean(members, axis=0)[0]
    assert int(np.argmax(mean)) == 2
    assert majority_vote(members).tolist() == [2]


def test_tie_only_among_the_most_voted_labels() -> None:
    # Classes 0 and 1 get two votes each, class 2 one vote but the highest mean probability:
    # the winner must still be one of the two most-voted classes (the one with higher mean).
    members = [
        _p([0.34, 0.33, 0.33]),
        _p([0.34, 0.33, 0.33]),
        _p([0.05, 0.60, 0.35]),
        _p([0.05, 0.60, 0.35]),
        _p([0.00, 0.00, 1.00]),
    ]
    mean = np.mean(members, axis=0)[0]
    assert int(np.argmax(mean)) == 2
    assert mean[1] > mean[0]
    assert majority_vote(members).tolist() == [1]


def test_exact_tie_goes_to_lowest_index() -> None:
    # Two members mirror each other: equal votes and equal mean probabilities for classes 1 and 3.
    members = [_p([0.1, 0.5, 0.1, 0.3]), _p([0.1, 0.3, 0.1, 0.5])]
    assert majority_vote(members).tolist() == [1]
    assert majority_vote(members[::-1]).tolist() == [1]


def test_uniform_probabilities_give_index_zero() -> None:
    uniform = np.full((2, 4), 0.25)
    assert majority_vote([uniform, uniform, uniform]).tolist() == [0, 0]


def test_member_order_does_not_matter() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        members = [rng.dirichlet(np.ones(4), size=8) for _ in range(4)]
        # Force many vote ties: quantise probabilities so equal means happen too.
        members = [np.round(m * 4) / 4 + 1e-12 for m in members]
        expected = majority_vote(members).tolist()
        for order in itertools.permutations(members):
            assert majority_vote(list(order)).tolist() == expected


def test_result_matches_a_plain_reference_implementation() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        n_members, batch, classes = int(rng.integers(1, 6)), 5, int(rng.integers(2, 5))
        members = [rng.dirichlet(np.ones(classes), size=batch) for _ in range(n_members)]
        got = majority_vote(members).tolist()
        for row in range(batch):
            votes = [int(np.argmax(m[row])) for m in members]
            counts = [votes.count(c) for c in range(classes)]
            mean = np.mean([m[row] for m in members], axis=0)
            best = max(counts)
            candidates = [c for c in range(classes) if counts[c] == best]
            top_mean = max(mean[c] for c in candidates)
            expected = min(c for c in candidates if mean[c] == top_mean)
            assert got[row] == expected


def test_accepts_logit_shaped_float32_input() -> None:
    members = [
        np.asarray([[0.2, 0.8]], dtype=np.float32),
        np.asarray([[0.6, 0.4]], dtype=np.float32),
        np.asarray([[0.1, 0.9]], dtype=np.float32),
    ]
    result = majority_vote(members)
    assert result.shape == (1,) and result.tolist() == [1]


def test_no_members_is_an_error() -> None:
    with pytest.raises(ValueError):
        majority_vote([])


def test_vote_counts() -> None:
    assert vote_counts([0, 2, 2, 1, 2], 4).tolist() == [1, 1, 3, 0]
    assert vote_counts([], 3).tolist() == [0, 0, 0]
