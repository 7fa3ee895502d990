"""Which combination rule each head uses, chosen on validation: the paper's majority vote over the
searched subset (training/ensemble_search.py), the mean probability over a searched subset, or a
weighted mean probability of all members with weights searched on a grid. Per head the rule with
the highest validation F1 (``objective``: weighted or macro, the user's choice) is kept; ties go to
the earlier rule in ``rules`` (majority vote first, the paper's). Pure numpy.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from memotion.labels import ALL_TASKS
from memotion.voting import Stacker, decision_scores, mean_probability
from training.calibration import fit_offsets, fit_stacker, offsets_cross_score, stacker_cross_score
from training.ensemble_search import (
    EnsembleSelection,
    Objective,
    Probabilities,
    TaskBMode,
    best_subset,
    objective_score,
    search_ensemble,
)

RULE_CHOICES = ("majority_vote", "mean_probability", "weighted_mean", "calibrated_mean", "stacked_lr")
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


@dataclass(frozen=True)
class HeadChoice:
    """One head's combination: rule, voters, weights, and any calibration fitted on validation."""

    score: float
    rule: str
    members: tuple[str, ...]
    weights: dict[str, float] | None = None
    offsets: tuple[float, ...] | None = None
    stacker: Stacker | None = None


def calibrated_choices(
    member: Mapping[str, np.ndarray],
    y: np.ndarray,
    num_classes: int,
    objective: Objective,
    rules: Sequence[str],
    base: HeadChoice,
) -> list[HeadChoice]:
    """Per-class offsets on the best mean-probability candidate (``base``), and a stacker over all
    members, each scored by cross-fitting on validation (training/calibration.py), then refitted on all of it."""
    out = []
    if "calibrated_mean" in rules:
        ordered = None if base.weights is None else [base.weights[m] for m in base.members]
        scores = decision_scores("mean_probability", [member[m] for m in base.members], ordered)
        score = offsets_cross_score(scores, y, num_classes, objective)
        offsets = fit_offsets(scores, y, num_classes, objective)
        out.append(HeadChoice(score, "mean_probability", base.members, base.weights, offsets))
    if "stacked_lr" in rules:
        models = tuple(member)
        stacked = [member[m] for m in models]
        score = stacker_cross_score(stacked, y, num_classes, objective)
        stacker = fit_stacker(stacked, y, num_classes, balanced=objective == "macro_f1")
        out.append(HeadChoice(score, "stacked_lr", models, None, None, stacker))
    return out


def best_mean(
    probabilities: Probabilities,
    head: str,
    y: np.ndarray,
    num_classes: int,
    objective: Objective,
    plain: list[HeadChoice],
) -> HeadChoice:
    """The best plain mean-probability candidate (searched subset when none was asked for)."""
    means = [c for c in plain if c.rule == "mean_probability"]
    if means:
        return max(means, key=lambda c: c.score)
    member = {m: probabilities[m][head] for m in probabilities}
    subset, score = best_subset(member, y, num_classes, tuple(probabilities), objective, "mean_probability")
    return HeadChoice(score, "mean_probability", subset)


def choose_head(
    probabilities: Probabilities,
    head: str,
    y: np.ndarray,
    num_classes: int,
    objective: Objective,
    rules: Sequence[str],
) -> HeadChoice:
    """The best of ``rules`` for one head on validation (first of equals, in ``rules`` order; a
    calibrated rule must beat the uncalibrated ones by its cross-fitted score)."""
    plain = [HeadChoice(*c) for c in _head_candidates(probabilities, head, y, num_classes, objective, rules)]
    calibrated = []
    if {"calibrated_mean", "stacked_lr"} & set(rules):
        base = best_mean(probabilities, head, y, num_classes, objective, plain)
        member = {m: probabilities[m][head] for m in probabilities}
        calibrated = calibrated_choices(member, y, num_classes, objective, rules, base)
    return max(plain + calibrated, key=lambda c: c.score)


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
    chosen = {
        spec.name: choose_head(
            probabilities, spec.name, np.asarray(y_true[spec.name]), spec.num_classes, objective, rules
        )
        for spec in ALL_TASKS
    }
    return replace(
        base,
        task_members={head: c.members for head, c in chosen.items()},
        task_rules={head: c.rule for head, c in chosen.items()},
        task_weights={head: c.weights for head, c in chosen.items() if c.weights is not None},
        task_offsets={head: c.offsets for head, c in chosen.items() if c.offsets is not None},
        task_stackers={head: c.stacker for head, c in chosen.items() if c.stacker is not None},
    )
