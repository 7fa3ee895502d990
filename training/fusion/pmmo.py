"""PM+MO (Armitage et al., ../shared/seeds/pm-mo-variational-fusion-paper.txt): module A fuses the
text and image features with three wide layers whose weights and biases are Laplace random
variables; module C, a maxout MLP, classifies the fused embedding.

Module A (Sec. 3.1): v_t = tanh(W_t x_t + b_t), v_i = tanh(W_i x_i + b_i), and the third layer over
the concatenation v_cat = [v_t, v_i] (eq. 1) gives the mixing gate g = σ(W_g v_cat + b_g), so that
eq. 2, z = g ⊙ v_i + (1 - g) ⊙ v_t, is dimensionally what the paper writes as
v_cat * v_i + (1 - v_cat) * v_t. Each weight has a variational posterior q = Laplace(loc, scale);
``loc`` is the posterior mean, which prediction and the ONNX export use. A also has a linear
read-out from z to every output: the likelihood p(y | x, θ) its ELBO needs (training/fusion/
train_pmmo.py builds the Pyro model and guide from the parameters here).

Pure torch: nothing here imports Pyro.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from training.fusion.gmu import gmu
from training.fusion.layers import MaxoutMLP
from training.fusion.models import Encoded, MaxoutFusionHead, output_probabilities
from training.models.heads import TaskLogits

# Sec. 4.1: the Laplace distributions of the weights start with scale 0.01. (The paper's initial
# mean of 0.1 for every weight would make all units of a layer identical, so the means start as
# nn.Linear's weights do.)
POSTERIOR_INIT_SCALE = 0.01


def inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class LaplaceLinear(nn.Module):
    """The variational parameters of one Bayesian linear layer: q(W) = Laplace(W_loc, softplus(W_ρ)),
    q(b) likewise. ``weight``/``bias`` sites are named ``<name>.weight`` / ``<name>.bias``."""

    def __init__(self, in_dim: int, out_dim: int, init_scale: float = POSTERIOR_INIT_SCALE) -> None:
        super().__init__()
        reference = nn.Linear(in_dim, out_dim)
        self.weight_loc = nn.Parameter(reference.weight.detach().clone())
        self.bias_loc = nn.Parameter(reference.bias.detach().clone())
        rho = inverse_softplus(init_scale)
        self.weight_rho = nn.Parameter(torch.full((out_dim, in_dim), rho))
        self.bias_rho = nn.Parameter(torch.full((out_dim,), rho))

    def posterior(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Site -> (loc, scale) of q."""
        return {
            "weight": (self.weight_loc, F.softplus(self.weight_rho)),
            "bias": (self.bias_loc, F.softplus(self.bias_rho)),
        }


class FusionModuleA(nn.Module):
    """Module A: three Laplace-weighted layers (text, image, gate), GMU mixing (eq. 1-2), read-out."""

    LAYERS = ("text", "image", "gate")

    def __init__(self, text_width: int, image_width: int, dim: int, outputs: list[int]) -> None:
        super().__init__()
        self.layers = nn.ModuleDict(
            {
                "text": LaplaceLinear(text_width, dim),
                "image": LaplaceLinear(image_width, dim),
                "gate": LaplaceLinear(2 * dim, dim),
            }
        )
        self.outputs = list(outputs)
        self.readout = nn.Linear(dim, sum(outputs))

    def sites(self) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
        """(site name, posterior loc, posterior scale) of every random weight and bias."""
        for layer in self.LAYERS:
            for param, (loc, scale) in self.layers[layer].posterior().items():
                yield f"{layer}.{param}", loc, scale

    def posterior_mean(self) -> dict[str, torch.Tensor]:
        return {name: loc for name, loc, _ in self.sites()}

    def sample_weights(self, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """One draw θ ~ q (without Pyro; for prediction with posterior samples)."""
        weights = {}
        for name, loc, scale in self.sites():
            u = torch.rand(loc.shape, generator=generator, device=loc.device, dtype=loc.dtype) - 0.5
            weights[name] = loc - scale * torch.sign(u) * torch.log1p(-2.0 * u.abs())  # Laplace inverse CDF
        return weights

    def fuse(
        self,
        x_text: torch.Tensor,
        x_image: torch.Tensor,
        weights: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """z for the weights θ given (the posterior mean by default)."""
        w = weights if weights is not None else self.posterior_mean()
        v_text = torch.tanh(F.linear(x_text, w["text.weight"], w["text.bias"]))
        v_image = torch.tanh(F.linear(x_image, w["image.weight"], w["image.bias"]))
        v_cat = torch.cat([v_text, v_image], dim=-1)  # eq. 1
        gate = torch.sigmoid(F.linear(v_cat, w["gate.weight"], w["gate.bias"]))
        return gmu(v_text, v_image, gate)  # eq. 2

    def readout_logits(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.readout(z).split(self.outputs, dim=-1))


class PmmoHead(MaxoutFusionHead):
    """Module A then module C. ``forward`` is the deterministic posterior-mean path."""

    FUSION, CLASSIFIER = "module_a", "module_c"
    module_a: FusionModuleA
    module_c: MaxoutMLP

    def make_fusion(
        self, text_width: int, image_width: int, dim: int, outputs: list[int], bound: float | None
    ) -> nn.Module:
        return FusionModuleA(text_width, image_width, dim, outputs)

    def forward(self, encoded: Encoded, weights: Mapping[str, torch.Tensor] | None = None) -> TaskLogits:
        return self.module_c(self.module_a.fuse(encoded.text_feature, encoded.image_feature, weights))


@torch.no_grad()
def predict_with_samples(
    head: PmmoHead,
    encoded: Encoded,
    samples: int,
    seed: int = 0,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Mean and standard deviation over ``samples`` posterior draws of each output's probabilities:
    the prediction and its uncertainty (module C in eval mode)."""
    if samples < 1:
        raise ValueError("samples must be >= 1")
    head.eval()
    generator = torch.Generator(device=encoded.text_feature.device).manual_seed(seed)
    draws = [output_probabilities(head(encoded, head.module_a.sample_weights(generator))) for _ in range(samples)]
    stacked = [torch.stack(per_output) for per_output in zip(*draws)]
    return [s.mean(dim=0) for s in stacked], [s.std(dim=0, unbiased=False) for s in stacked]
