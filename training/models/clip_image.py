"""CLIP-image (paper Fig. 1b): classifier on the image classification embedding F_cls,i."""

from __future__ import annotations

import torch
from torch import nn

from training.models.encoders import ClipImageEncoder
from training.models.heads import MultiTaskHead, TaskLogits


class ClipImageClassifier(nn.Module):
    def __init__(self, encoder: ClipImageEncoder, head_hidden: int = 512, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = MultiTaskHead(encoder.width, head_hidden, dropout)

    def logits_from_features(self, cls: torch.Tensor) -> TaskLogits:
        return self.head(cls)

    def forward(self, pixel_values: torch.Tensor) -> TaskLogits:
        _, cls = self.encoder(pixel_values)
        return self.head(cls)
