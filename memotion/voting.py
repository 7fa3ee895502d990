"""Majority voting over ensemble members (paper Sec. 5), one task at a time. Pure numpy."""

from __future__ import annotations

from typing import Sequence

import numpy as np


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
