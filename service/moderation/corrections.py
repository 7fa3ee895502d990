"""A moderator's corrected labels: the models' labels with the person's changes, as a full set
(Task A and every Task C head), which is what a Memotion-format training row needs. A Task B
correction moves its Task C head: absent -> the lowest intensity, present -> at least the first
level above it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class LabelError(ValueError):
    """A corrected label names a head, emotion or label the served models do not have."""


def corrected_labels(
    predicted: Mapping[str, str],
    heads: Mapping[str, Sequence[str]],
    emotion_heads: Mapping[str, str],
    labels: Mapping[str, str],
    task_b: Mapping[str, bool],
) -> dict[str, str]:
    """Head -> label for every head in ``heads``: ``predicted``, then ``labels``, then ``task_b``."""
    out = {head: predicted[head] for head in heads}
    for head, label in labels.items():
        if head not in heads:
            raise LabelError(f"unknown head {head!r}; use one of {sorted(heads)}")
        if label not in heads[head]:
            raise LabelError(f"{label!r} is not a label of {head!r}; use one of {list(heads[head])}")
        out[head] = label
    for emotion, present in task_b.items():
        if emotion not in emotion_heads:
            raise LabelError(f"unknown Task B emotion {emotion!r}; use one of {sorted(emotion_heads)}")
        head = emotion_heads[emotion]
        levels = list(heads[head])
        if not present:
            out[head] = levels[0]
        elif out[head] == levels[0]:
            if head in labels:
                raise LabelError(f"{emotion} is marked present but {head} is set to {levels[0]!r}")
            out[head] = levels[1]
    return out
