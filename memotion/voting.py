"""Majority voting over ensemble members (paper Sec. 5), one task at a time. Pure numpy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from memotion.labels import TASK_B_NAMES, TASK_B_OUTPUT


def majority_vote(probabilities: Sequence[np.ndarray]) -> np.ndarray:
    """Each member's argmax is one vote; the label with most votes wins, per row.

    ``probabilities``: one [batch, classes] array per member. Ties between labels with equally many
    votes go to the highest mean member probability, then to the lowest class index, so the result
    never depends on member order.
    """
    if not probabilities:
        raise ValueError("majority_vote needs at least one member")
    stacked = np.stack([np.asarray(p, dtype=np.float64) for p in probabilities])  # [M, B, C]
    _, batch, classes = stacked.shape
    votes = np.zeros((batch, classes), dtype=np.int64)
    np.add.at(votes, (np.arange(batch)[None, :], stacked.argmax(axis=-1)), 1)
    mean_probability = stacked.mean(axis=0)
    # Votes dominate (each vote is worth more than any probability difference in [0, 1]);
    # np.argmax returns the lowest index among exact ties.
    return np.argmax(votes * 2.0 + mean_probability, axis=-1)


def vote_counts(labels: Sequence[int], num_classes: int) -> np.ndarray:
    """How many members chose each class (for showing per-model votes)."""
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)


def presence_probabilities(intensity_probabilities: np.ndarray) -> np.ndarray:
    """[B, intensities] -> [B, 2]: P(absent) = P(intensity 0), P(present) = the rest.

    A member's Task B vote when Task B is decided directly (present iff P(present) > 1/2).
    """
    absent = np.asarray(intensity_probabilities, dtype=np.float64)[:, 0]
    return np.stack([absent, 1.0 - absent], axis=-1)


def member_presence(member_probabilities: Mapping[str, np.ndarray], head: str) -> np.ndarray:
    """[B, 2] (absent, present): one member's Task B vote for Task C head ``head``.

    From the member's direct Task B head when it has one (``member_probabilities[TASK_B_OUTPUT]``,
    [B, 4] sigmoid probabilities in TASK_B_NAMES order), else from its Task C head (P(intensity > 0)).
    """
    if TASK_B_OUTPUT in member_probabilities:
        present = np.asarray(member_probabilities[TASK_B_OUTPUT], dtype=np.float64)[:, list(TASK_B_NAMES).index(head)]
        return np.stack([1.0 - present, present], axis=-1)
    return presence_probabilities(member_probabilities[head])


# How a head's members are combined: the paper's majority vote, the (weighted) mean of the
# members' probabilities (soft voting), or a multinomial logistic regression over the members'
# log-probabilities (a stacker fitted on validation). The manifest names one rule per head.
RULES = ("majority_vote", "mean_probability", "stacked_lr")
PROBABILITY_FLOOR = 1e-6  # log-probabilities of the members and of the mean are taken above this


@dataclass(frozen=True)
class Stacker:
    """A multinomial logistic regression over the members' log-probabilities: logits =
    ``coef`` @ [log p_1; ...; log p_M] + ``intercept``; ``coef`` is [C, M * C] (members in voter order)."""

    coef: tuple[tuple[float, ...], ...]
    intercept: tuple[float, ...]


def _stack(probabilities: Sequence[np.ndarray]) -> np.ndarray:
    return np.stack([np.asarray(p, dtype=np.float64) for p in probabilities])  # [M, B, C]


def mean_scores(probabilities: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """[B, C] the members' weighted mean probability, p(c) = sum_m w_m p_m(c) / sum_m w_m (None: equal)."""
    if not probabilities:
        raise ValueError("mean_probability needs at least one member")
    stacked = _stack(probabilities)
    w = np.ones(len(probabilities)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(probabilities),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights {list(w)} must be {len(probabilities)} non-negative numbers, not all 0")
    return np.tensordot(w / w.sum(), stacked, axes=1)


def stacker_features(probabilities: Sequence[np.ndarray]) -> np.ndarray:
    """[B, M * C] the members' log-probabilities side by side (the stacker's input)."""
    return np.concatenate([np.log(np.maximum(p, PROBABILITY_FLOOR)) for p in _stack(probabilities)], axis=1)


def stacked_logits(probabilities: Sequence[np.ndarray], stacker: Stacker) -> np.ndarray:
    """[B, C] the stacker's logits on the members' probabilities."""
    coef, intercept = np.asarray(stacker.coef, dtype=np.float64), np.asarray(stacker.intercept, dtype=np.float64)
    features = stacker_features(probabilities)
    if coef.shape != (intercept.size, features.shape[1]):
        raise ValueError(
            f"stacker coef {coef.shape} does not fit {len(probabilities)} members x {intercept.size} classes"
        )
    return features @ coef.T + intercept


def decision_scores(
    rule: str,
    probabilities: Sequence[np.ndarray],
    weights: Sequence[float] | None = None,
    stacker: Stacker | None = None,
) -> np.ndarray:
    """[B, C] the log-scores a head decides on (argmax, after any offsets): log of the (weighted)
    mean probability, or the stacker's logits."""
    if rule == "stacked_lr":
        if stacker is None:
            raise ValueError("rule stacked_lr needs the stacker's coefficients")
        return stacked_logits(probabilities, stacker)
    if rule == "mean_probability":
        return np.log(np.maximum(mean_scores(probabilities, weights), PROBABILITY_FLOOR))
    raise ValueError(f"rule {rule!r} has no decision scores; choose from {RULES[1:]}")


def decide(scores: np.ndarray, offsets: Sequence[float] | None = None) -> np.ndarray:
    """argmax_c (scores(c) + offsets(c)) per row: the decision calibrated per class (None: plain argmax).
    Ties go to the lowest class index."""
    scores = np.asarray(scores, dtype=np.float64)
    if offsets is None:
        return np.argmax(scores, axis=-1)
    b = np.asarray(offsets, dtype=np.float64)
    if b.shape != scores.shape[-1:]:
        raise ValueError(f"{b.size} offsets for {scores.shape[-1]} classes")
    return np.argmax(scores + b, axis=-1)


def mean_probability(probabilities: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """argmax_c of the members' weighted mean probability (``mean_scores``), per row.

    ``weights`` None: equal weights. Ties go to the lowest class index."""
    return np.argmax(mean_scores(probabilities, weights), axis=-1)


def combine(
    rule: str,
    probabilities: Sequence[np.ndarray],
    weights: Sequence[float] | None = None,
    offsets: Sequence[float] | None = None,
    stacker: Stacker | None = None,
) -> np.ndarray:
    """The label per row that ``rule`` gives (``majority_vote`` ignores ``weights``; ``offsets``,
    per class, are added to the log mean probability or the stacker's logits before the argmax)."""
    if rule == "majority_vote":
        if offsets is not None:
            raise ValueError("majority_vote takes no offsets")
        return majority_vote(probabilities)
    if rule == "mean_probability" and offsets is None:
        return mean_probability(probabilities, weights)
    if rule in RULES:
        return decide(decision_scores(rule, probabilities, weights, stacker), offsets)
    raise ValueError(f"unknown combination rule {rule!r}; choose from {RULES}")
