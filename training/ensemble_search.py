"""Majority-vote ensembles and the paper's exhaustive search over model combinations (Sec. 5).

"We iterate over all possible model combinations and adopt majority voting on the validation set to
find the best performance model combinations." Done per task: every head (Task A and the four Task
C heads) gets the non-empty subset of models whose majority vote scores the highest weighted F1 on
validation. Task B is decided from the voted Task C label (intensity > 0, the paper) or directly:
each member votes present iff its P(intensity > 0) > 1/2 (a member with a direct Task B head: that
head's probability, memotion.voting.member_presence), and every emotion gets its own searched
subset. Ties between subsets: fewest members, then first in model order (the order the models are
given in), so the result never depends on anything else. Pure numpy.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from memotion.labels import ALL_TASKS, TASK_C
from memotion.voting import Stacker, combine, majority_vote, member_presence
from training.metrics import macro_f1, memotion_scores, weighted_f1

TaskBMode = Literal["from_task_c", "direct"]
Objective = Literal["weighted_f1", "macro_f1"]  # Memotion 3's measure, or SemEval-2020 Task 8's
SUBSET_TIE_BREAK = "fewest_members_then_model_order"
MAX_SEARCH_MODELS = 12  # 4095 combinations per task; more would be slow and overfit validation

Probabilities = Mapping[str, Mapping[str, np.ndarray]]  # model -> task -> [N, classes]


@dataclass(frozen=True)
class EnsembleSelection:
    """Which models vote on which task; ``task_b_members`` (per Task C head) only for ``direct``."""

    models: tuple[str, ...]  # every candidate, in model order
    task_members: dict[str, tuple[str, ...]]
    task_b: TaskBMode = "from_task_c"
    task_b_members: dict[str, tuple[str, ...]] = field(default_factory=dict)
    search: str = "exhaustive"  # "exhaustive" (searched on validation) or "all" (every model votes)
    # Per head, how its members are combined (memotion.voting.RULES; absent: majority vote) and,
    # for a weighted mean, each member's weight (absent: equal); the measure the search maximised.
    task_rules: dict[str, str] = field(default_factory=dict)
    task_weights: dict[str, dict[str, float]] = field(default_factory=dict)
    objective: Objective = "weighted_f1"
    # Decision calibration fitted on validation (training/calibration.py): per-class offsets on a
    # head's log-scores, and the stacker of a ``stacked_lr`` head (its voters: task_members[head]).
    task_offsets: dict[str, tuple[float, ...]] = field(default_factory=dict)
    task_stackers: dict[str, Stacker] = field(default_factory=dict)

    def rule(self, task: str) -> str:
        return self.task_rules.get(task, "majority_vote")

    def weights(self, task: str) -> list[float] | None:
        """The weights of ``task_members[task]`` in order (None: equal)."""
        weights = self.task_weights.get(task)
        return None if weights is None else [weights[m] for m in self.task_members[task]]

    def members(self) -> tuple[str, ...]:
        """Every model that votes on something, in model order."""
        used = {m for group in (*self.task_members.values(), *self.task_b_members.values()) for m in group}
        return tuple(m for m in self.models if m in used)

    def to_json(self) -> dict:
        return {
            "members": list(self.members()),
            "task_members": _lists(self.task_members),
            "task_b": self.task_b,
            "task_b_members": _lists(self.task_b_members),
            "search": self.search,
            "subset_tie_break": SUBSET_TIE_BREAK,
            "candidates": list(self.models),
            "task_rules": dict(self.task_rules),
            "task_weights": {task: dict(w) for task, w in self.task_weights.items()},
            "objective": self.objective,
            "task_offsets": {task: list(b) for task, b in self.task_offsets.items()},
            "task_stackers": {
                task: {"coef": [list(row) for row in st.coef], "intercept": list(st.intercept)}
                for task, st in self.task_stackers.items()
            },
        }


def selection_from_json(data: Mapping) -> EnsembleSelection:
    """The selection that ``EnsembleSelection.to_json`` wrote (summary.json's ``ensemble``)."""
    return EnsembleSelection(
        models=tuple(data["candidates"]),
        task_members={task: tuple(m) for task, m in data["task_members"].items()},
        task_b=data.get("task_b", "from_task_c"),
        task_b_members={head: tuple(m) for head, m in data.get("task_b_members", {}).items()},
        search=data.get("search", "exhaustive"),
        task_rules=dict(data.get("task_rules", {})),
        task_weights={task: dict(w) for task, w in data.get("task_weights", {}).items()},
        objective=data.get("objective", "weighted_f1"),
        task_offsets={task: tuple(b) for task, b in data.get("task_offsets", {}).items()},
        task_stackers={
            task: Stacker(tuple(map(tuple, st["coef"])), tuple(st["intercept"]))
            for task, st in data.get("task_stackers", {}).items()
        },
    )


def _lists(groups: Mapping[str, tuple[str, ...]]) -> dict[str, list[str]]:
    return {name: list(group) for name, group in groups.items()}


def combinations(models: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset, fewest members first, then in model order (the tie-break order)."""
    return [c for size in range(1, len(models) + 1) for c in itertools.combinations(models, size)]


def objective_score(objective: Objective, y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """The F1 the search maximises: weighted (Memotion 3) or macro (SemEval-2020 Task 8)."""
    if objective == "macro_f1":
        return macro_f1(y_true, y_pred, num_classes)
    return weighted_f1(y_true, y_pred, num_classes)


def best_subset(
    member_probabilities: Mapping[str, np.ndarray],
    y_true: np.ndarray,
    num_classes: int,
    models: Sequence[str],
    objective: Objective = "weighted_f1",
    rule: str = "majority_vote",
) -> tuple[tuple[str, ...], float]:
    """The subset of ``models`` whose combination by ``rule`` (default majority vote) has the
    highest ``objective`` F1 on ``y_true``.

    Candidates are visited in tie-break order and only a strictly better score replaces the best,
    so ties go to the fewest members, then to the first in model order.
    """
    best: tuple[tuple[str, ...], float] | None = None
    for subset in combinations(models):
        voted = combine(rule, [member_probabilities[m] for m in subset])
        score = objective_score(objective, y_true, voted, num_classes)
        if best is None or score > best[1]:
            best = (subset, score)
    assert best is not None
    return best


def search_ensemble(
    probabilities: Probabilities,
    y_true: Mapping[str, np.ndarray],
    task_b: TaskBMode = "from_task_c",
    objective: Objective = "weighted_f1",
) -> EnsembleSelection:
    """Exhaustive search per task on validation (``y_true``: class indices per task), maximising
    ``objective`` (the paper's weighted F1 by default)."""
    models = tuple(probabilities)
    if not models:
        raise ValueError("the ensemble search needs at least one model")
    if len(models) > MAX_SEARCH_MODELS:
        raise ValueError(
            f"{len(models)} models: the exhaustive search is limited to "
            f"{MAX_SEARCH_MODELS} (2^n - 1 combinations per task)"
        )
    task_members = {
        spec.name: best_subset(
            {m: probabilities[m][spec.name] for m in models},
            np.asarray(y_true[spec.name]),
            spec.num_classes,
            models,
            objective,
        )[0]
        for spec in ALL_TASKS
    }
    task_b_members = {}
    if task_b == "direct":
        task_b_members = {
            spec.name: best_subset(
                {m: member_presence(probabilities[m], spec.name) for m in models},
                np.asarray(y_true[spec.name]) > 0,
                2,
                models,
                objective,
            )[0]
            for spec in TASK_C
        }
    return EnsembleSelection(models, task_members, task_b, task_b_members, "exhaustive", objective=objective)


def all_members(
    models: Sequence[str], task_b: TaskBMode = "from_task_c", rule: str = "majority_vote"
) -> EnsembleSelection:
    """Every model votes on every task (no search), combined by ``rule`` (majority_vote or
    mean_probability: the equal-weight mean of the members' probabilities)."""
    if rule not in ("majority_vote", "mean_probability"):
        raise ValueError(f"every model votes by majority_vote or mean_probability, not {rule!r}")
    models = tuple(models)
    task_b_members = {spec.name: models for spec in TASK_C} if task_b == "direct" else {}
    rules = {spec.name: rule for spec in ALL_TASKS} if rule != "majority_vote" else {}
    return EnsembleSelection(
        models, {spec.name: models for spec in ALL_TASKS}, task_b, task_b_members, "all", task_rules=rules
    )


def ensemble_predict(
    probabilities: Probabilities, selection: EnsembleSelection
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(voted class per task, Task B presence per Task C head) for the selection's members."""
    labels = {
        spec.name: combine(
            selection.rule(spec.name),
            [probabilities[m][spec.name] for m in selection.task_members[spec.name]],
            selection.weights(spec.name),
            selection.task_offsets.get(spec.name),
            selection.task_stackers.get(spec.name),
        )
        for spec in ALL_TASKS
    }
    if selection.task_b == "direct":
        present = {
            spec.name: majority_vote(
                [member_presence(probabilities[m], spec.name) for m in selection.task_b_members[spec.name]]
            )
            == 1
            for spec in TASK_C
        }
    else:
        present = {spec.name: labels[spec.name] > 0 for spec in TASK_C}
    return labels, present


def ensemble_scores(
    probabilities: Probabilities, y_true: Mapping[str, np.ndarray], selection: EnsembleSelection
) -> dict[str, float]:
    """Memotion 3 weighted F1 of the selection's votes."""
    labels, present = ensemble_predict(probabilities, selection)
    return memotion_scores(y_true, labels, task_b_pred=present)
