"""Multi-modal classifiers: the CLIP text and image encoders, then a fusion head.

``MultimodalClassifier(ids, pixels)`` returns the usual logits per task (Task A, the four Task C
heads) and, when its head has a direct Task B head, one more output: [B, 4] Task B logits (sigmoid,
trained with BCE; Task C head order). It exposes the encoders' features for PMR
(``encoder_features``, see training/factory.py). Heads take an :class:`Encoded` batch, so they also
train on features computed once (training/experiments/fusion_table.py).
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import torch
from torch import nn

from memotion.labels import ALL_TASKS, TASK_B_NAMES
from training.fusion.heads import FusionOp, Modality, build_fusion
from training.fusion.layers import DEFAULT_MAX_NORM, MaxoutMLP
from training.models.encoders import ClipImageEncoder, ClipTextEncoder, token_lengths
from training.models.heads import Classifier, MultiTaskHead, TaskLogits

BRANCH = "multi"  # the prediction branch of every fusion kind (ModelKind.branch)


class Encoded(NamedTuple):
    """What the two CLIP encoders make of a batch (paper eq. 1 and 4 of the memotion3 seed)."""

    text_tokens: torch.Tensor  # [B, L, d_t]
    text_feature: torch.Tensor  # [B, d_t]: F_cls,t
    text_valid: torch.Tensor  # [B, L] bool: real tokens (up to <end_of_text>)
    image_tokens: torch.Tensor  # [B, 1 + p, d_i]
    image_feature: torch.Tensor  # [B, d_i]: F_cls,i

    def subset(self, index: torch.Tensor | slice) -> Encoded:
        return Encoded(*(t[index] for t in self))


def task_output_sizes(task_b_direct: bool) -> list[int]:
    """Classes per output: the tasks in ALL_TASKS order, then the Task B emotions if direct."""
    return [t.num_classes for t in ALL_TASKS] + ([len(TASK_B_NAMES)] if task_b_direct else [])


def output_probabilities(logits: TaskLogits) -> list[torch.Tensor]:
    """Softmax for the task heads, sigmoid for a direct Task B output after them."""
    return [torch.softmax(x, dim=-1) if i < len(ALL_TASKS) else torch.sigmoid(x) for i, x in enumerate(logits)]


def encode(
    text_encoder: ClipTextEncoder,
    image_encoder: ClipImageEncoder,
    input_ids: torch.Tensor,
    pixel_values: torch.Tensor,
) -> Encoded:
    text_tokens, text_feature = text_encoder(input_ids)
    image_tokens, image_feature = image_encoder(pixel_values)
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :]
    text_valid = positions < token_lengths(input_ids)[:, None]
    return Encoded(text_tokens, text_feature, text_valid, image_tokens, image_feature)


class MultimodalClassifier(nn.Module):
    """CLIP text + image encoders and a head over their :class:`Encoded` output."""

    def __init__(self, text: ClipTextEncoder, image: ClipImageEncoder, head: nn.Module) -> None:
        super().__init__()
        self.text_encoder = text
        self.image_encoder = image
        self.head = head

    @property
    def task_b_direct(self) -> bool:
        return bool(getattr(self.head, "task_b_direct", False))

    def encode(self, input_ids: torch.Tensor, pixel_values: torch.Tensor) -> Encoded:
        return encode(self.text_encoder, self.image_encoder, input_ids, pixel_values)

    def encoder_features(
        self, input_ids: torch.Tensor, pixel_values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(F_cls,t, F_cls,i): the PMR protocol of training/factory.py."""
        return self.text_encoder(input_ids)[1], self.image_encoder(pixel_values)[1]

    def forward_branches_and_features(
        self, input_ids: torch.Tensor, pixel_values: torch.Tensor
    ) -> tuple[dict[str, TaskLogits], tuple[torch.Tensor, torch.Tensor]]:
        encoded = self.encode(input_ids, pixel_values)
        return {BRANCH: self.head(encoded)}, (encoded.text_feature, encoded.image_feature)

    def forward(self, input_ids: torch.Tensor, pixel_values: torch.Tensor) -> TaskLogits:
        return self.head(self.encode(input_ids, pixel_values))


class Projection(nn.Module):
    """A modality's last featurizer layer into the fusion width: Linear -> ReLU (as the report's
    128-wide inner representations)."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, dim), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FusionHead(nn.Module):
    """Project both features to ``dim``, fuse them with one of the report's operations, classify
    with the project's usual head (FC -> GELU -> dropout -> output per task)."""

    def __init__(
        self,
        fusion: str,
        text_width: int,
        image_width: int,
        dim: int,
        head_hidden: int,
        dropout: float,
        attention_heads: int = 4,
        task_b_direct: bool = False,
    ) -> None:
        super().__init__()
        self.fusion_name = fusion
        self.text_projection = Projection(text_width, dim)
        self.image_projection = Projection(image_width, dim)
        self.fusion: FusionOp = build_fusion(fusion, dim, attention_heads)
        self.classifier = MultiTaskHead(self.fusion.out_dim, head_hidden, dropout)
        self.task_b_direct = task_b_direct
        self.task_b = (
            Classifier(self.fusion.out_dim, head_hidden, len(TASK_B_NAMES), dropout) if task_b_direct else None
        )

    def _modality(
        self, projection: Projection, feature: torch.Tensor, tokens: torch.Tensor, valid: torch.Tensor
    ) -> Modality:
        projected = projection(feature)
        if not self.fusion.uses_tokens:
            return Modality(projected, projected[:, None], valid[:, :1])
        return Modality(projected, projection(tokens), valid)

    def fused(self, encoded: Encoded) -> torch.Tensor:
        text = self._modality(self.text_projection, encoded.text_feature, encoded.text_tokens, encoded.text_valid)
        image_valid = torch.ones(encoded.image_tokens.shape[:2], dtype=torch.bool, device=encoded.image_tokens.device)
        image = self._modality(self.image_projection, encoded.image_feature, encoded.image_tokens, image_valid)
        return self.fusion(image, text)

    def forward(self, encoded: Encoded) -> TaskLogits:
        fused = self.fused(encoded)
        logits = self.classifier(fused)
        return logits + (self.task_b(fused),) if self.task_b is not None else logits


class MaxoutFusionHead(nn.Module):
    """The GMU baseline's and PM+MO's shape: a fusion module over (F_cls,t, F_cls,i) into ``dim``,
    then a maxout classifier; one output per task (+ Task B when ``task_b_direct``).

    Subclasses build the fusion module (:meth:`make_fusion`) and name both parts (``FUSION``,
    ``CLASSIFIER``: the attribute names their checkpoints' keys start with)."""

    FUSION: ClassVar[str]
    CLASSIFIER: ClassVar[str]

    def __init__(
        self,
        text_width: int,
        image_width: int,
        dim: int,
        hidden: int,
        dropout: float,
        task_b_direct: bool = False,
        bound: float | None = DEFAULT_MAX_NORM,
    ) -> None:
        super().__init__()
        self.task_b_direct = task_b_direct
        outputs = task_output_sizes(task_b_direct)
        self.add_module(self.FUSION, self.make_fusion(text_width, image_width, dim, outputs, bound))
        self.add_module(self.CLASSIFIER, MaxoutMLP(dim, hidden, outputs, dropout, bound=bound))

    def make_fusion(
        self, text_width: int, image_width: int, dim: int, outputs: list[int], bound: float | None
    ) -> nn.Module:
        """The module fusing the two features into ``dim`` (``outputs``: classes per output)."""
        raise NotImplementedError
