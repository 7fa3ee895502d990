"""Is the validation set big enough to have chosen the ensemble's voters? Pure numpy.

The exhaustive search (training/ensemble_search.py) keeps the subset with the highest weighted F1
on validation, ties to the fewest members. On a small validation set every subset scores about
the same, and the tie-break then quietly serves one member. This check compares, per head, the
searched subset with every member voting: when the searched subset wins by less than the noise of
an F1 measured on n memes (1/sqrt(n), two standard errors of a proportion at its widest), the data
could not tell the members apart, and the warning says so (summary.json, manifest, export, gateway).
The searched side is scored by its own combination rule and weights (training/ensemble_combination.py)
and both sides by the F1 the search maximised.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from memotion.labels import ALL_TASKS
from memotion.voting import combine
from training.ensemble_search import Objective, objective_score

Probabilities = Mapping[str, Mapping[str, np.ndarray]]  # model -> task -> [N, classes]


def noise_bound(memes: int) -> float:
    """1/sqrt(n): two standard errors of a proportion measured on n memes, at p = 1/2."""
    return 1.0 / math.sqrt(max(memes, 1))


def vote_f1(
    probabilities: Probabilities,
    members: tuple[str, ...],
    head: str,
    truth: np.ndarray,
    classes: int,
    rule: str = "majority_vote",
    weights: Mapping[str, float] | None = None,
    objective: Objective = "weighted_f1",
    offsets: Sequence[float] | None = None,
) -> float:
    """``objective`` F1 of ``members`` combined by ``rule`` (``weights``: per member; ``offsets``:
    per class, training/calibration.py) on ``head``."""
    ordered = None if weights is None else [weights[m] for m in members]
    voted = combine(rule, [probabilities[m][head] for m in members], ordered, offsets)
    return objective_score(objective, truth, voted, classes)


def undecided_heads(
    probabilities: Probabilities,
    y_true: Mapping[str, np.ndarray],
    task_members: Mapping[str, tuple[str, ...]],
    task_rules: Mapping[str, str] | None = None,
    task_weights: Mapping[str, Mapping[str, float]] | None = None,
    objective: Objective = "weighted_f1",
    task_offsets: Mapping[str, Sequence[float]] | None = None,
) -> dict[str, float]:
    """Head -> ``objective`` margin of its searched voters (by their rule and weights) over all
    members voting, for heads where a subset was chosen by a margin below ``noise_bound``."""
    everyone = tuple(probabilities)
    undecided = {}
    for spec in ALL_TASKS:
        chosen = task_members.get(spec.name, everyone)
        if len(chosen) == len(everyone):
            continue
        truth = np.asarray(y_true[spec.name])
        rule = (task_rules or {}).get(spec.name, "majority_vote")
        weights = (task_weights or {}).get(spec.name)
        offsets = (task_offsets or {}).get(spec.name)
        margin = vote_f1(
            probabilities, chosen, spec.name, truth, spec.num_classes, rule, weights, objective, offsets
        ) - vote_f1(probabilities, everyone, spec.name, truth, spec.num_classes, objective=objective)
        if margin < noise_bound(len(truth)):
            undecided[spec.name] = margin
    return undecided


def selection_warnings(
    probabilities: Probabilities,
    y_true: Mapping[str, np.ndarray],
    task_members: Mapping[str, tuple[str, ...]],
    task_rules: Mapping[str, str] | None = None,
    task_weights: Mapping[str, Mapping[str, float]] | None = None,
    objective: Objective = "weighted_f1",
    task_offsets: Mapping[str, Sequence[float]] | None = None,
) -> list[str]:
    """The warning to show when the validation set could not tell the members apart (else none)."""
    undecided = undecided_heads(probabilities, y_true, task_members, task_rules, task_weights, objective, task_offsets)
    if not undecided:
        return []
    memes = len(np.asarray(next(iter(y_true.values()))))
    picked = sorted({m for head in undecided for m in task_members[head]})
    return [
        f"the validation set ({memes} memes) is too small to tell the members apart on "
        f"{', '.join(undecided)}: the searched voters ({', '.join(picked)}) beat all members voting by "
        f"at most {max(undecided.values()):.3f} {objective.replace('_f1', ' F1')}, below the noise bound "
        f"1/sqrt({memes}) = "
        f"{noise_bound(memes):.3f}; fewer members are served than were trained. Use a larger validation "
        "set, or `memotion train --no-ensemble-search` to have every member vote"
    ]
