"""Build, run, save and load the three CLIP classifiers by kind."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.backbone import create_clip
from training.models import ClipImageClassifier, ClipMultiClassifier, ClipTextClassifier
from training.models.encoders import ClipImageEncoder, ClipTextEncoder
from training.models.heads import TaskLogits

MODEL_KINDS = ("clip_text", "clip_image", "clip_multi")
MODEL_INPUTS: dict[str, tuple[str, ...]] = {
    "clip_text": ("input_ids",),
    "clip_image": ("pixel_values",),
    "clip_multi": ("input_ids", "pixel_values"),
}


@dataclass(frozen=True)
class ModelConfig:
    """Head sizes; the defaults are the paper's (d = 512, dropout 0.1, 6 attention blocks)."""

    lstm_hidden: int = 512
    head_hidden: int = 512
    dropout: float = 0.1
    attention_blocks: int = 6
    attention_heads: int = 8
    residual: bool = False


def build_unimodal(kind: str, clip: nn.Module, config: ModelConfig) -> nn.Module:
    if kind == "clip_text":
        return ClipTextClassifier(
            ClipTextEncoder(clip), config.lstm_hidden, config.head_hidden, config.dropout
        )
    if kind == "clip_image":
        return ClipImageClassifier(ClipImageEncoder(clip), config.head_hidden, config.dropout)
    raise ValueError(f"{kind} is not a uni-modal kind")


def build_multi(
    text_model: ClipTextClassifier, image_model: ClipImageClassifier, config: ModelConfig
) -> ClipMultiClassifier:
    """CLIP-multi initialised from (copies of) the trained uni-modal models, as the paper does."""
    return ClipMultiClassifier(
        copy.deepcopy(text_model), copy.deepcopy(image_model), config.attention_blocks,
        config.attention_heads, config.head_hidden, config.dropout, config.residual,
    )


def build_model(kind: str, clip_name: str, config: ModelConfig, pretrained: str | None = None) -> nn.Module:
    if kind == "clip_multi":
        text = build_unimodal("clip_text", create_clip(clip_name, pretrained), config)
        image = build_unimodal("clip_image", create_clip(clip_name, pretrained), config)
        return build_multi(text, image, config)
    return build_unimodal(kind, create_clip(clip_name, pretrained), config)


def run_branches(
    model: nn.Module, kind: str, input_ids: torch.Tensor, pixel_values: torch.Tensor
) -> dict[str, TaskLogits]:
    """Logits of every branch a model has (one for uni-modal models, three for CLIP-multi)."""
    if kind == "clip_text":
        return {"text": model(input_ids)}
    if kind == "clip_image":
        return {"image": model(pixel_values)}
    return model.forward_branches(input_ids, pixel_values)


def prediction_branch(kind: str) -> str:
    return {"clip_text": "text", "clip_image": "image", "clip_multi": "multi"}[kind]


def save_checkpoint(
    path: Path, model: nn.Module, kind: str, clip_name: str, config: ModelConfig,
    extra: dict[str, Any] | None = None,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"kind": kind, "clip": clip_name, "model_config": asdict(config),
         "state_dict": model.state_dict(), **(extra or {})},
        path,
    )
    return path


def load_checkpoint(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """A model in eval mode, and the checkpoint's metadata (everything but the weights)."""
    payload = torch.load(path, map_location="cpu", weights_only=False)
    config = ModelConfig(**payload["model_config"])
    model = build_model(payload["kind"], payload["clip"], config)
    model.load_state_dict(payload.pop("state_dict"))
    return model.eval(), payload
