"""The one training loop every training here runs: epochs of steps (capped by ``max_steps``), a
progress bar, validation after every epoch, the best epoch's weights kept and restored, the history
of epoch entries.

What differs between trainings is a :class:`Strategy`: the Memotion multi-task step with gradient
blending and PMR (training/trainer.py), contrastive and binary pre-training (training/pretrain.py),
PM+MO's SVI step (training/fusion/train_pmmo.py), a fusion head on frozen features
(training/experiments/fusion_table.py). A strategy makes each epoch's batches, trains on
one batch, validates, and logs; the loop owns the counting, the progress bar and the bookkeeping.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from memotion.progress import progress_bar

StepStats = dict[str, float]


@dataclass(frozen=True)
class EpochResult:
    """What validation made of an epoch."""

    entry: dict[str, float]  # the epoch's history row
    key: float  # higher is better: the best epoch has the highest (the first of equals)
    scores: dict[str, float]  # what the best epoch reports
    outputs: Any = None  # kept with the best epoch (e.g. validation probabilities)


class Strategy(Protocol):
    """What one kind of training does in the loop."""

    desc: str  # the progress bar's description
    postfix: tuple[str, ...]  # the step statistics the progress bar shows

    def begin_epoch(self, epoch: int) -> Iterable[Any]:
        """Prepare the epoch (before the model is put in training mode); return its batches."""
        ...

    def train_step(self, batch: Any, epoch: int, step: int) -> StepStats:
        """Train on one batch (``step``: the 0-based step over the whole training)."""
        ...

    def validate(self, epoch: int, step: int, stats: list[StepStats]) -> EpochResult:
        """Validate after ``epoch`` (``stats``: its steps' statistics)."""
        ...

    def end_epoch(self, epoch: int, result: EpochResult) -> None:
        """After validation and best-epoch selection: log, report, update schedules."""
        ...


@dataclass
class LoopResult:
    best_epoch: int
    best: EpochResult
    state: dict[str, torch.Tensor]  # the best epoch's weights (loaded into the model)
    history: list[dict[str, float]]
    steps: int
    seconds: float


def total_steps(steps_per_epoch: int, epochs: int, max_steps: int | None) -> int:
    """All epochs' steps, or ``max_steps`` if fewer."""
    total = steps_per_epoch * epochs
    return total if max_steps is None else min(total, max_steps)


def optimise(loss: torch.Tensor, *optimizers: torch.optim.Optimizer) -> None:
    """Zero the gradients, backpropagate ``loss``, step every optimiser."""
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for optimizer in optimizers:
        optimizer.step()


@dataclass
class _Best:
    epoch: int
    result: EpochResult
    state: dict[str, torch.Tensor]


def run_loop(
    model: nn.Module,
    strategy: Strategy,
    epochs: int,
    steps: int,
    progress: bool = True,
) -> LoopResult:
    """Train ``model`` for ``epochs`` epochs or ``steps`` steps, whichever ends first; validate after
    every epoch; leave the best epoch's weights in the model (in eval mode)."""
    history: list[dict[str, float]] = []
    best: _Best | None = None
    step = 0
    started = time.perf_counter()
    bar = progress_bar(total=steps, desc=strategy.desc, disable=not progress, unit="step")
    for epoch in range(1, epochs + 1):
        if step >= steps:
            break
        batches = strategy.begin_epoch(epoch)
        model.train()
        stats: list[StepStats] = []
        for batch in batches:
            if step >= steps:
                break
            stats.append(strategy.train_step(batch, epoch, step))
            step += 1
            bar.update(1)
            shown = {name: f"{stats[-1][name]:.3f}" for name in strategy.postfix}
            bar.set_postfix(epoch=epoch, **shown, refresh=False)
        result = strategy.validate(epoch, step, stats)
        history.append(result.entry)
        if best is None or result.key > best.result.key:
            best = _Best(epoch, result, copy.deepcopy(model.state_dict()))
        strategy.end_epoch(epoch, result)
    bar.close()
    assert best is not None, "no epoch ran"
    model.load_state_dict(best.state)
    model.eval()
    return LoopResult(best.epoch, best.result, best.state, history, step, time.perf_counter() - started)
