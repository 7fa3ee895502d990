"""Layers of Arevalo et al.'s classifier, shared by the GMU baseline and PM+MO's module C: maxout
units (Goodfellow et al. 2013), max-norm weight constraints (Srivastava et al. 2014), batch norm,
dropout."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

# Goodfellow et al.'s max-norm bound for maxout networks.
DEFAULT_MAX_NORM = 1.9365


def maxout(x: torch.Tensor, pieces: int) -> torch.Tensor:
    """h_i = max_j z_ij over the ``pieces`` linear pieces of unit i; x is [B, units * pieces]."""
    return x.view(*x.shape[:-1], x.shape[-1] // pieces, pieces).amax(dim=-1)


def max_norm(weight: torch.Tensor, bound: float) -> torch.Tensor:
    """Each unit's incoming weight vector (a row) rescaled to norm <= bound; shorter rows unchanged."""
    norms = weight.norm(dim=1, keepdim=True)
    return weight * torch.clamp(bound / norms.clamp(min=1e-12), max=1.0)


class MaxNorm(nn.Module):
    """A parametrisation: the layer always computes with ``max_norm(weight)``. The constraint then
    holds at every step, also in the exported graph, without a hook in the training loop (a
    reparametrisation rather than the projection after each update of the original papers)."""

    def __init__(self, bound: float) -> None:
        super().__init__()
        self.bound = bound

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return max_norm(weight, self.bound)


def max_norm_linear(in_dim: int, out_dim: int, bound: float | None) -> nn.Linear:
    layer = nn.Linear(in_dim, out_dim)
    if bound is not None:
        parametrize.register_parametrization(layer, "weight", MaxNorm(bound))
    return layer


class BatchNorm1d(nn.BatchNorm1d):
    """Batch norm that uses its running statistics for a training batch of one (where batch
    statistics do not exist) instead of failing on the last, odd-sized batch of an epoch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


class Maxout(nn.Module):
    def __init__(self, in_dim: int, units: int, pieces: int, bound: float | None) -> None:
        super().__init__()
        self.pieces = pieces
        self.linear = max_norm_linear(in_dim, units * pieces, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return maxout(self.linear(x), self.pieces)


class MaxoutMLP(nn.Module):
    """Maxout hidden layer -> batch norm -> dropout, then one max-norm linear output per head:
    ``forward(x [B, in_dim]) -> tuple of [B, classes] per entry of ``outputs``."""

    def __init__(
        self,
        in_dim: int,
        hidden: int,
        outputs: Sequence[int],
        dropout: float,
        pieces: int = 2,
        bound: float | None = DEFAULT_MAX_NORM,
    ) -> None:
        super().__init__()
        self.hidden = nn.Sequential(Maxout(in_dim, hidden, pieces, bound), BatchNorm1d(hidden), nn.Dropout(dropout))
        self.outputs = nn.ModuleList(max_norm_linear(hidden, n, bound) for n in outputs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = self.hidden(x)
        return tuple(out(h) for out in self.outputs)
