"""The Memotion 3 label space: Task A sentiment, Task C intensities, Task B derived from Task C.

Pure data and pure functions; no torch, no I/O. Both halves of the product (training and the
gateway) use these names, and export copies them into the manifest so the gateway never has to
import this module to interpret a model's outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    """One classification head: its name, class labels (index order) and short codes."""

    name: str
    labels: tuple[str, ...]
    codes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.labels)


TASK_A = TaskSpec(
    name="sentiment",
    labels=("negative", "neutral", "positive"),
    codes=("-", "!", "+"),
)

# Task C: intensity of each emotion (paper Table 2; label strings as in the Memotion 3 CSVs).
TASK_C: tuple[TaskSpec, ...] = (
    TaskSpec("humour", ("not_funny", "funny", "very_funny", "hilarious"), ("NF", "F", "VF", "H")),
    TaskSpec(
        "sarcasm",
        ("not_sarcastic", "general", "twisted_meaning", "very_twisted"),
        ("NS", "LS", "VS", "ES"),
    ),
    TaskSpec(
        "offensive",
        ("not_offensive", "slight", "very_offensive", "hateful_offensive"),
        ("NO", "S", "VO", "HO"),
    ),
    TaskSpec("motivational", ("not_motivational", "motivational"), ("NM", "M")),
)

ALL_TASKS: tuple[TaskSpec, ...] = (TASK_A, *TASK_C)
TASKS_BY_NAME: dict[str, TaskSpec] = {t.name: t for t in ALL_TASKS}

# Task B: one binary emotion per Task C head, named as the challenge names them.
TASK_B_NAMES: dict[str, str] = {
    "humour": "humorous",
    "sarcasm": "sarcastic",
    "offensive": "offensive",
    "motivational": "motivational",
}
# A model may also predict Task B directly (multi-label, trained with BCE): one more output with
# this name, [B, 4] logits in TASK_B_NAMES order (the ONNX output, manifest and probability key).
TASK_B_OUTPUT = "task_b"

# Label strings seen in the Memotion data sets, folded onto our canonical labels.
_ALIASES: dict[str, dict[str, str]] = {
    "sentiment": {
        "very_negative": "negative",
        "very negative": "negative",
        "very_positive": "positive",
        "very positive": "positive",
    },
    "sarcasm": {
        "little_sarcastic": "general",
        "very_sarcastic": "twisted_meaning",
        "extremely_sarcastic": "very_twisted",
    },
    "offensive": {"hateful": "hateful_offensive"},
}


def parse_label(task: str, raw: str | int) -> int:
    """Map a raw label (string, short code or class index) of ``task`` to its class index."""
    spec = TASKS_BY_NAME[task]
    if isinstance(raw, int) or (isinstance(raw, str) and raw.strip().isdigit()):
        index = int(raw)
        if not 0 <= index < spec.num_classes:
            raise ValueError(f"{task}: class index {index} out of range 0..{spec.num_classes - 1}")
        return index
    text = str(raw).strip()
    key = text.lower().replace("-", "_")
    key = _ALIASES.get(task, {}).get(key, key)
    if key in spec.labels:
        return spec.labels.index(key)
    if text.upper() in spec.codes:
        return spec.codes.index(text.upper())
    if key.replace(" ", "_") in spec.labels:
        return spec.labels.index(key.replace(" ", "_"))
    raise ValueError(f"{task}: unknown label {raw!r}; expected one of {list(spec.labels)}")


def task_b_from_task_c(intensity: Mapping[str, int]) -> dict[str, bool]:
    """Task B from Task C, as the paper does it: an emotion is present iff its intensity > 0."""
    return {TASK_B_NAMES[name]: int(intensity[name]) > 0 for name in TASK_B_NAMES}


def task_names() -> Sequence[str]:
    return [t.name for t in ALL_TASKS]
