"""Re-sampling a training set against class imbalance (Task A: negative is 9% of Memotion 1).

``balanced_indices`` repeats rows of the rarer classes so each class's share moves towards uniform:
``power`` 0 keeps the data as it is, 1 makes every class as frequent as the largest, 0.5 (the
default) is the square-root middle ground. Validation and test are never re-sampled. Pure numpy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def balanced_indices(labels: Sequence[int], power: float = 0.5, seed: int = 0) -> np.ndarray:
    """Row indices (shuffled; every row at least once) with the rarer classes over-sampled."""
    if not 0.0 <= power <= 1.0:
        raise ValueError(f"power must be in [0, 1], got {power}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    largest = counts.max()
    rows: list[np.ndarray] = []
    for label, count in zip(classes, counts):
        members = np.flatnonzero(labels == label)
        target = int(round(count * (largest / count) ** power))
        extra = rng.choice(members, size=target - count, replace=True) if target > count else members[:0]
        rows += [members, extra]
    out = np.concatenate(rows)
    return out[rng.permutation(len(out))]
