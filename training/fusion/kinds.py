"""The fusion model kinds training/factory.py registers: one per course-report fusion operation
(``fusion_<op>``), the GMU baseline (``gmu``) and PM+MO (``pmmo``, trained by SVI).

All take ``input_ids`` and ``pixel_values`` and predict from the ``multi`` branch. Sizes come from
ModelConfig: ``fusion_dim`` (projection / fusion / GMU / module A width), ``head_hidden`` (the
classifier's hidden or maxout layer), ``dropout``, ``attention_heads``, ``task_b_direct``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch import nn

from training.backbone import create_clip
from training.fusion.gmu import GMUHead
from training.fusion.heads import FUSION_OPS
from training.fusion.models import BRANCH, FusionHead, MultimodalClassifier
from training.fusion.pmmo import PmmoHead
from training.models.encoders import ClipImageEncoder, ClipTextEncoder

if TYPE_CHECKING:
    from training.factory import ModelConfig

FUSION_HEAD_KINDS = tuple(f"fusion_{op}" for op in FUSION_OPS)
FUSION_KINDS = FUSION_HEAD_KINDS + ("gmu", "pmmo")
__all__ = ["BRANCH", "FUSION_KINDS", "build_head", "builder", "trainer"]


def build_head(kind: str, text_width: int, image_width: int, config: ModelConfig) -> nn.Module:
    """The head of ``kind`` over features of the given widths (an :class:`Encoded` batch in)."""
    if kind in FUSION_HEAD_KINDS:
        return FusionHead(
            kind.removeprefix("fusion_"),
            text_width,
            image_width,
            config.fusion_dim,
            config.head_hidden,
            config.dropout,
            config.attention_heads,
            config.task_b_direct,
        )
    if kind == "gmu":
        return GMUHead(
            text_width, image_width, config.fusion_dim, config.head_hidden, config.dropout, config.task_b_direct
        )
    if kind == "pmmo":
        return PmmoHead(
            text_width, image_width, config.fusion_dim, config.head_hidden, config.dropout, config.task_b_direct
        )
    raise ValueError(f"{kind!r} is not a fusion kind; choose from {FUSION_KINDS}")


def builder(kind: str) -> Callable[[str, ModelConfig, str | None], MultimodalClassifier]:
    """``ModelKind.build`` for ``kind``: both encoders from one CLIP, then the head."""

    def build(clip_name: str, config: ModelConfig, pretrained: str | None) -> MultimodalClassifier:
        clip = create_clip(clip_name, pretrained)
        text, image = ClipTextEncoder(clip), ClipImageEncoder(clip)
        return MultimodalClassifier(text, image, build_head(kind, text.width, image.width, config))

    return build


def _train_pmmo(*args: Any, **kwargs: Any) -> Any:
    from training.fusion.train_pmmo import train_pmmo  # imports Pyro

    return train_pmmo(*args, **kwargs)


def trainer(kind: str) -> Callable[..., Any] | None:
    """``ModelKind.train``: PM+MO's SVI loop; the other kinds use the shared loop (None)."""
    return _train_pmmo if kind == "pmmo" else None
