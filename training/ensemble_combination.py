"""Which combination rule each head uses, chosen on validation: the paper's majority vote over the
searched subset (training/ensemble_search.py), the mean probability over a searched subset, or a
weighted mean probability of all members with weights searched on a grid. Per head the rule with
the highest validation F1 (``objective``: weighted or macro, the user's choice) is kept; ties go to
the earlier rule in ``rules`` (majority vote first, the paper's). Pure numpy.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from memotion.labels import ALL_TASKS
from memotion.voting import mean_probability
from training.ensemble_search import (
    EnsembleSelection,
    Objective,
    Probabilities,
    TaskBMode,
    best_subset,
    objective_score,
    search_ensemble,
)

RULE_CHOICES = ("majority_vote", "mean_probability", "weighted_mean")
MAX_WEIGHTED_MEMBERS = 4  # a grid of step 0.1 over 4 weights: 286 points per head


def weight_grid(members: int, step: float = 0.1) -> list[tuple[float, ...]]:
    """Every weight vector on the simplex with entries that are multiples of ``step`` (summing to 1)."""
    units = round(1 / step)
    return [
        tuple(c / units for c in combo)
        for combo in itertools.product(range(units + 1), repeat=members)
        if sum(combo) == units
    ]


def best_weights(
    member_probabilities: Mapping[str, np.ndarray],
    y_true: np.ndarray,
    num_classes: int,
    models: Sequence[str],
    objective: Objective,
    step: float = 0.1,
) -> tuple[dict[str, float], float]:
    """The grid weights whose weighted mean probability scores best (first best in grid order)."""
    best: tuple[dict[str, float], float] | None = None
    stacked = [member_probabilities[m] for m in models]
    for weights in weight_grid(len(models), step):
        score = objective_score(objective, y_true, mean_probability(stacked, weights), num_classes)
        if best is None or score > best[1]:
            best = (dict(zip(models, weights)), score)
    assert best is not None
    return best


def _head_candidates(
    probabilities: Probabilities,
    head: str,
    y: np.ndarray,
    num_classes: int,
    objective: Objective,
    rules: Sequence[str],
) -> list[tuple[float, str, tuple[str, ...], dict[str, float] | None]]:
    """(score, rule, members, weights) for every rule asked for, in ``rules`` order."""
    models = tuple(probabilities)
    member = {m: probabilities[m][head] for m in models}
    out = []
    for rule in rules:
        if rule in ("majority_vote", "mean_probability"):
            subset, score = best_subset(member, y, num_classes, models, objective, rule)
            out.append((score, rule, subset, None))
        elif rule == "weighted_mean" and 1 < len(models) <= MAX_WEIGHTED_MEMBERS:
            weights, score = best_weights(member, y, num_classes, models, objective)
            used = tuple(m for m in models if weights[m] > 0)
            out.append((score, "mean_probability", used, {m: weights[m] for m in used}))
    return out


def search_combination(
    probabilities: Probabilities,
    y_true: Mapping[str, np.ndarray],
    objective: Objective = "weighted_f1",
    rules: Sequence[str] = RULE_CHOICES,
    task_b: TaskBMode = "from_task_c",
) -> EnsembleSelection:
    """Per head, the best of ``rules`` on validation; Task B as ``search_ensemble`` does it."""
    unknown = set(rules) - set(RULE_CHOICES)
    if unknown or not rules:
        raise ValueError(f"unknown combination rules {sorted(unknown)}; choose from {RULE_CHOICES}")
    base = search_ensemble(probabilities, y_true, task_b, objective)
    task_members, task_rules, task_weights = {}, {}, {}
    for spec in ALL_TASKS:
        candidates = _head_candidates(
            probabilities, spec.name, np.asarray(y_true[spec.name]), spec.num_classes, objective, rules
        )
        score, rule, members, weights = max(candidates, key=lambda c: c[0])  # first of equals
        task_members[spec.name], task_rules[spec.name] = members, rule
        if weights is not None:
            task_weights[spec.name] = weights
    return replace(base, task_members=task_members, task_rules=task_rules, task_weights=task_weights)
