"""Per-task decision thresholds for Task B (is the emotion present?).

By default an emotion is present when the ensemble's voted Task C intensity is above the lowest
("not") level (the paper). A threshold ``t`` for an emotion replaces that by
``P(present) >= t``, where P(present) = 1 - P(lowest intensity) under the ensemble's mean member
probabilities: a trust-and-safety team can flag ``offensive`` at 0.3 and ``motivational`` at 0.8.
"""

from __future__ import annotations

from collections.abc import Mapping


class ThresholdError(ValueError):
    """Unknown task name or a threshold outside [0, 1]."""


def presence_probability(scores: Mapping[str, float], absent_label: str) -> float:
    """P(emotion present) = 1 - P(lowest intensity)."""
    return max(0.0, min(1.0, 1.0 - float(scores[absent_label])))


def resolve_thresholds(
    requested: Mapping[str, float] | None,
    defaults: Mapping[str, float],
    task_b_names: Mapping[str, str],
) -> dict[str, float]:
    """Thresholds by Task B emotion name: the configured ``defaults`` overridden by ``requested``.

    Keys may be emotion names (``offensive``, ``humorous``) or their Task C head names (``humour``).
    """
    by_head = dict(task_b_names)
    emotions = set(by_head.values())
    out: dict[str, float] = {}
    for source in (defaults, requested or {}):
        for key, value in source.items():
            name = by_head.get(key, key)
            if name not in emotions:
                raise ThresholdError(
                    f"unknown task {key!r} in thresholds; use one of {sorted(emotions)} (Task B emotions) "
                    f"or {sorted(by_head)} (their Task C heads)"
                )
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
                raise ThresholdError(f"threshold for {key!r} must be a number in [0, 1], got {value!r}")
            out[name] = float(value)
    return out


def decide_task_b(
    voted: Mapping[str, bool],
    presence: Mapping[str, float],
    thresholds: Mapping[str, float],
) -> dict[str, bool]:
    """Task B flags: ``presence >= threshold`` where a threshold is set, else the voted answer."""
    return {
        name: (presence[name] >= thresholds[name]) if name in thresholds else bool(flag) for name, flag in voted.items()
    }
