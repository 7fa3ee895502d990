"""Majority voting over ensemble members (paper Sec. 5), one task at a time. Pure numpy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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
