"""Gradient blending (Wang, Tran & Feiszli 2020; memotion3 paper eq. 7): weights for the text, image
and multi-modal branches' losses, fixed or estimated from each branch's overfitting-to-generalisation
ratio (OGR) on a held-out part of the training set.

The estimator as the public implementations do it: hold out ~10% of train; for every super-epoch
measure each branch's train loss LT and held-out loss LV before (1) and after (2) it;
dG = max(0, LV1 - LV2) (generalisation gained), O = LV - LT (overfitting),
w_k = max(1e-8, dG / max(1e-8, (O2 - O1)^2)), normalised to sum 1. The weights of one super-epoch
come from the measurements of the previous one; the first super-epoch uses ``initial`` weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch

EPSILON = 1e-8
GBMode = Literal["off", "fixed", "estimated"]
# The authors' fixed weights (image 0.3-0.6, multi 0.3-0.5, text the rest; reference notes).
PAPER_WEIGHTS = {"text": 0.2, "image": 0.4, "multi": 0.4}


@dataclass(frozen=True)
class GradientBlendConfig:
    """How a multi-branch model's branch losses are combined.

    ``off``: only the prediction branch's loss (the paper's "CLIP-multi without GB").
    ``fixed``: ``weights`` (the authors' searched weights by default).
    ``estimated``: OGR weights, re-estimated every ``super_epoch`` epochs on ``holdout_fraction``
    of the training set, which is then not trained on.
    """

    mode: GBMode = "fixed"
    weights: dict[str, float] = field(default_factory=lambda: dict(PAPER_WEIGHTS))
    holdout_fraction: float = 0.1
    super_epoch: int = 1

    def __post_init__(self) -> None:
        if self.mode not in ("off", "fixed", "estimated"):
            raise ValueError(f"gradient blending mode must be off, fixed or estimated, not {self.mode!r}")
        if not 0 < self.holdout_fraction < 1:
            raise ValueError("holdout_fraction must lie in (0, 1)")
        if self.super_epoch < 1:
            raise ValueError("super_epoch must be >= 1")
        if any(w < 0 for w in self.weights.values()):
            raise ValueError(f"gradient blending weights must be >= 0: {self.weights}")


@dataclass(frozen=True)
class BranchLosses:
    """One measurement: each branch's mean loss on the training subset and on the held-out set."""

    train: dict[str, float]
    heldout: dict[str, float]


def ogr_weights(before: BranchLosses, after: BranchLosses) -> dict[str, float]:
    """Wang et al. eq. 10-11 as implemented: w_k ~ dG_k / dO_k^2, floored at 1e-8, summing to 1."""
    raw = {}
    for name in before.heldout:
        gain = max(0.0, before.heldout[name] - after.heldout[name])  # dG = max(0, LV1 - LV2)
        overfit_before = before.heldout[name] - before.train[name]  # O1 = LV1 - LT1
        overfit_after = after.heldout[name] - after.train[name]  # O2 = LV2 - LT2
        raw[name] = max(EPSILON, gain / max(EPSILON, (overfit_after - overfit_before) ** 2))
    total = sum(raw.values())
    return {name: value / total for name, value in raw.items()}


def normalise_weights(weights: Mapping[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    if total <= 0:
        raise ValueError(f"gradient blending weights sum to {total}")
    return {name: float(w) / total for name, w in weights.items()}


def split_holdout(size: int, fraction: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, held-out indices): a seeded random ``fraction`` of ``size`` rows held out."""
    if size < 2:
        raise ValueError("gradient-blending estimation needs at least 2 training examples")
    order = torch.randperm(size, generator=generator)
    held = min(size - 1, max(1, round(fraction * size)))
    return order[held:], order[:held]


Measure = Callable[[], BranchLosses]


class BlendWeightEstimator:
    """Online OGR estimation: call :meth:`start` once before training and :meth:`end_epoch` after
    every epoch; :attr:`weights` are the weights to train with now; :attr:`log` keeps every estimate.

    ``measure`` evaluates the model (eval mode, no gradients) and returns every branch's loss on the
    training subset and the held-out set.
    """

    def __init__(
        self,
        measure: Measure,
        branches: tuple[str, ...],
        super_epoch: int = 1,
        initial: Mapping[str, float] | None = None,
    ) -> None:
        self.measure = measure
        self.super_epoch = super_epoch
        start = initial if initial is not None else dict.fromkeys(branches, 1.0)
        self.weights = normalise_weights({name: start[name] for name in branches})
        self.log: list[dict[str, object]] = []
        self._before: BranchLosses | None = None

    def start(self) -> None:
        self._before = self.measure()

    def end_epoch(self, epoch: int) -> bool:
        """Re-estimate after every ``super_epoch``-th epoch; True when the weights changed."""
        if self._before is None:
            raise RuntimeError("call start() before end_epoch()")
        if epoch % self.super_epoch:
            return False
        after = self.measure()
        self.weights = ogr_weights(self._before, after)
        self.log.append(
            {"epoch": epoch, "weights": dict(self.weights), "train_loss": after.train, "heldout_loss": after.heldout}
        )
        self._before = after
        return True
