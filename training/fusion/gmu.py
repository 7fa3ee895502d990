"""The GMU baseline (Arevalo et al. 2017, as the PM+MO paper builds it): a gated multimodal unit over
the text and image features, then a maxout MLP with batch norm, dropout and max-norm constraints,
trained end to end with a single objective."""

from __future__ import annotations

import torch
from torch import nn

from training.fusion.layers import MaxNorm, MaxoutMLP
from training.fusion.models import Encoded, MaxoutFusionHead
from training.models.heads import TaskLogits


def gmu(h_text: torch.Tensor, h_image: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """h = z ⊙ h_v + (1 - z) ⊙ h_t (Arevalo et al. eq. 4; PM+MO eq. 2 with z = the gate)."""
    return gate * h_image + (1.0 - gate) * h_text


class GatedMultimodalUnit(nn.Module):
    """h_t = tanh(W_t x_t), h_v = tanh(W_v x_v), z = σ(W_z [x_v, x_t]) (Arevalo et al. eq. 1-3)."""

    def __init__(self, text_width: int, image_width: int, dim: int, bound: float | None) -> None:
        super().__init__()
        self.text = nn.Linear(text_width, dim, bias=False)
        self.image = nn.Linear(image_width, dim, bias=False)
        self.gate = nn.Linear(image_width + text_width, dim, bias=False)
        if bound is not None:
            for layer in (self.text, self.image, self.gate):
                nn.utils.parametrize.register_parametrization(layer, "weight", MaxNorm(bound))

    def forward(self, x_text: torch.Tensor, x_image: torch.Tensor) -> torch.Tensor:
        h_text = torch.tanh(self.text(x_text))
        h_image = torch.tanh(self.image(x_image))
        gate = torch.sigmoid(self.gate(torch.cat([x_image, x_text], dim=-1)))
        return gmu(h_text, h_image, gate)


class GMUHead(MaxoutFusionHead):
    """GMU over (F_cls,t, F_cls,i), then the maxout classifier; one output per task (+ Task B)."""

    FUSION, CLASSIFIER = "gmu", "classifier"
    gmu: GatedMultimodalUnit
    classifier: MaxoutMLP

    def make_fusion(
        self, text_width: int, image_width: int, dim: int, outputs: list[int], bound: float | None
    ) -> nn.Module:
        return GatedMultimodalUnit(text_width, image_width, dim, bound)

    def forward(self, encoded: Encoded) -> TaskLogits:
        return self.classifier(self.gmu(encoded.text_feature, encoded.image_feature))
