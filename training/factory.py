"""Build, run, save and load classifiers by kind: a registry that new kinds add themselves to."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from training.backbone import create_clip
from training.models import ClipImageClassifier, ClipMultiClassifier, ClipTextClassifier
from training.models.encoders import ClipImageEncoder, ClipTextEncoder
from training.models.heads import TaskLogits


@dataclass(frozen=True)
class ModelConfig:
    """Head sizes; the defaults are the paper's (d = 512, dropout 0.1, 6 attention blocks)."""

    lstm_hidden: int = 512
    head_hidden: int = 512
    dropout: float = 0.1
    attention_blocks: int = 6
    attention_heads: int = 8
    residual: bool = False


Builder = Callable[[str, ModelConfig, "str | None"], nn.Module]


@dataclass(frozen=True)
class ModelKind:
    """What the rest of the system needs to know about one kind of classifier.

    ``inputs``: the ONNX/gateway input names, in ``forward``'s argument order. ``branch``: the key of
    ``run_branches``' result that is the model's prediction (CLIP-multi also returns the text and
    image branches it is trained with, for gradient blending). ``build(clip_name, config,
    pretrained)`` makes a fresh model (``load_checkpoint`` uses it too).
    """

    name: str
    inputs: tuple[str, ...]
    branch: str
    build: Builder


MODEL_REGISTRY: dict[str, ModelKind] = {}


def register_kind(kind: ModelKind) -> ModelKind:
    MODEL_REGISTRY[kind.name] = kind
    return kind


def model_kind(name: str) -> ModelKind:
    try:
        return MODEL_REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model kind {name!r}; choose from {sorted(MODEL_REGISTRY)}") from None


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


def _fresh_unimodal(kind: str) -> Builder:
    return lambda clip_name, config, pretrained: build_unimodal(kind, create_clip(clip_name, pretrained), config)


def _fresh_multi(clip_name: str, config: ModelConfig, pretrained: str | None) -> nn.Module:
    text = build_unimodal("clip_text", create_clip(clip_name, pretrained), config)
    image = build_unimodal("clip_image", create_clip(clip_name, pretrained), config)
    return build_multi(text, image, config)


register_kind(ModelKind("clip_text", ("input_ids",), "text", _fresh_unimodal("clip_text")))
register_kind(ModelKind("clip_image", ("pixel_values",), "image", _fresh_unimodal("clip_image")))
register_kind(ModelKind("clip_multi", ("input_ids", "pixel_values"), "multi", _fresh_multi))

# The paper's three CLIP models, trained by the default recipe.
MODEL_KINDS = ("clip_text", "clip_image", "clip_multi")


def model_inputs(kind: str) -> tuple[str, ...]:
    return model_kind(kind).inputs


def build_model(kind: str, clip_name: str, config: ModelConfig, pretrained: str | None = None) -> nn.Module:
    return model_kind(kind).build(clip_name, config, pretrained)


def run_branches(
    model: nn.Module, kind: str, input_ids: torch.Tensor, pixel_values: torch.Tensor
) -> dict[str, TaskLogits]:
    """Logits of every branch a model has (one for most kinds, three for CLIP-multi).

    A model with several branches implements ``forward_branches(input_ids, pixel_values)``; any
    other is called with its ``ModelKind.inputs`` and has the one branch ``ModelKind.branch``.
    """
    if hasattr(model, "forward_branches"):
        return model.forward_branches(input_ids, pixel_values)
    tensors = {"input_ids": input_ids, "pixel_values": pixel_values}
    spec = model_kind(kind)
    return {spec.branch: model(*(tensors[name] for name in spec.inputs))}


def prediction_branch(kind: str) -> str:
    return model_kind(kind).branch


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
