"""Classifier heads: 'a fully connected layer with a dropout layer followed by an output layer'."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from memotion.labels import ALL_TASKS, TaskSpec

TaskLogits = tuple[torch.Tensor, ...]  # one [B, classes] tensor per task, in ALL_TASKS order


class Classifier(nn.Module):
    """FC -> GELU -> dropout -> output (the paper's dropout 0.1; GELU: the authors' heads had none)."""

    def __init__(self, in_dim: int, hidden: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MultiTaskHead(nn.Module):
    """One Classifier per task (Task A and the four Task C heads) over a shared feature."""

    def __init__(self, in_dim: int, hidden: int, dropout: float = 0.1, tasks: Sequence[TaskSpec] = ALL_TASKS) -> None:
        super().__init__()
        self.task_names = [t.name for t in tasks]
        self.heads = nn.ModuleList(Classifier(in_dim, hidden, t.num_classes, dropout) for t in tasks)

    def forward(self, x: torch.Tensor) -> TaskLogits:
        return tuple(head(x) for head in self.heads)


def add_logits(a: TaskLogits, b: TaskLogits) -> TaskLogits:
    return tuple(x + y for x, y in zip(a, b))
