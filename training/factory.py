"""Build, run, save and load classifiers by kind: a registry that new kinds add themselves to."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from training.backbone import create_clip
from training.models import ClipImageClassifier, ClipMultiClassifier, ClipTextClassifier
from training.models.encoders import ClipImageEncoder, ClipTextEncoder
from training.models.heads import TaskLogits
from training.oscar.config import OscarArchitecture

if TYPE_CHECKING:
    from memotion.data_format import MemeRecord
    from memotion.manifest import ModelEntry
    from training.dataset import MemeTensors


@dataclass(frozen=True)
class ModelConfig:
    """Head sizes; the defaults are the paper's (d = 512, dropout 0.1, 6 attention blocks)."""

    lstm_hidden: int = 512
    head_hidden: int = 512
    dropout: float = 0.1
    attention_blocks: int = 6
    attention_heads: int = 8
    residual: bool = False
    # Fusion kinds (training/fusion/): the width both features are projected to / the fusion and
    # GMU / PM+MO layers' width, and whether the model also predicts Task B directly (BCE head).
    fusion_dim: int = 256
    task_b_direct: bool = False
    # OSCAR only: its BERT config and region size, set by its prepare step (training/oscar/kind.py).
    oscar: OscarArchitecture | None = None
    # bert_text only: its BERT config, max length and pad id, set by its prepare step
    # (training/pretrained_text/kind.py).
    text_encoder: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "oscar", OscarArchitecture.coerce(self.oscar))  # from a checkpoint


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
    # A kind whose inputs are not the shared CLIP tensors (OSCAR) also has
    # ``prepare(KindData) -> PreparedKind``: the recipe calls it instead of ``build`` to make the
    # model and add the kind's inputs to each split (``MemeTensors.extras``); and
    # ``export(KindExport) -> ModelEntry``: ``memotion export`` calls it to write the kind's ONNX
    # graph(s) and pre-stage files into the repository.
    prepare: Callable[[KindData], PreparedKind] | None = None
    export: Callable[[KindExport], ModelEntry] | None = None
    # A kind that does not train in the shared loop (PM+MO: SVI) has its own function with
    # ``training.trainer.train_model``'s signature and result; None: ``train_model``.
    train: Callable[..., Any] | None = None
    # A kind that is not a torch model (tfidf_lr: scikit-learn, exported to ONNX when fitted) has
    # ``fit(KindData) -> TrainResult`` instead of build/train, and no checkpoint.pt (its ``export``
    # gets ``KindExport.model`` None).
    fit: Callable[[KindData], Any] | None = None


@dataclass
class KindData:
    """What ``ModelKind.prepare`` gets from the recipe."""

    records: dict[str, Sequence[MemeRecord]]  # split ("train", "val") -> its memes
    tensors: dict[str, MemeTensors]  # split -> the shared CLIP tensors
    recipe: Any  # the RecipeConfig (model and kind options)
    out_dir: Path  # the kind's run directory
    progress: bool = True
    log: Callable[[str], None] = print


@dataclass
class PreparedKind:
    model: nn.Module  # ready to train (pre-trained parts loaded)
    model_config: ModelConfig  # what rebuilds it from its checkpoint
    tensors: dict[str, MemeTensors]  # split -> tensors with the kind's inputs in ``extras``


@dataclass
class KindExport:
    """What ``ModelKind.export`` gets from ``memotion export``."""

    model: nn.Module | None  # loaded from the checkpoint, eval mode (None: a kind with ``fit``)
    kind: str
    run_dir: Path
    repository: Path
    version: int
    validation: dict[str, float]
    log: Callable[[str], None] = print


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
        return ClipTextClassifier(ClipTextEncoder(clip), config.lstm_hidden, config.head_hidden, config.dropout)
    if kind == "clip_image":
        return ClipImageClassifier(ClipImageEncoder(clip), config.head_hidden, config.dropout)
    raise ValueError(f"{kind} is not a uni-modal kind")


def build_multi(
    text_model: ClipTextClassifier, image_model: ClipImageClassifier, config: ModelConfig
) -> ClipMultiClassifier:
    """CLIP-multi initialised from (copies of) the trained uni-modal models, as the paper does."""
    return ClipMultiClassifier(
        copy.deepcopy(text_model),
        copy.deepcopy(image_model),
        config.attention_blocks,
        config.attention_heads,
        config.head_hidden,
        config.dropout,
        config.residual,
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


def _oscar_kind() -> ModelKind:
    """OSCAR (paper Sec. 5): BERT over text, object tags and detector regions (training/oscar/)."""
    from training.oscar import kind as oscar

    return ModelKind(
        "oscar", oscar.OSCAR_INPUTS, "oscar", oscar.build_oscar, prepare=oscar.prepare_oscar, export=oscar.export_oscar
    )


register_kind(_oscar_kind())


def _bert_text_kind() -> ModelKind:
    """A pretrained BERT encoder (default all-MiniLM-L6-v2) under CLIP-text's heads (training/pretrained_text/)."""
    from training.pretrained_text import kind as bert_text

    return ModelKind(
        "bert_text",
        bert_text.INPUTS,
        "text",
        bert_text.build_bert_text,
        prepare=bert_text.prepare_bert_text,
        export=bert_text.export_bert_text,
    )


register_kind(_bert_text_kind())


def _no_torch_model(clip_name: str, config: ModelConfig, pretrained: str | None) -> nn.Module:
    raise ValueError(
        "tfidf_lr, tfidf_char and tfidf_nb are fitted by scikit-learn (ModelKind.fit), not built as torch models"
    )


def _tfidf_kind(name: str) -> ModelKind:
    """TF-IDF (word or character n-grams) + logistic regression as an ONNX member with a string
    input (training/tfidf_member.py)."""
    from functools import partial

    from training import tfidf_member

    return ModelKind(
        name,
        tfidf_member.INPUTS,
        "text",
        _no_torch_model,
        export=tfidf_member.export_kind,
        fit=partial(tfidf_member.fit_kind, kind=name),
    )


register_kind(_tfidf_kind("tfidf_lr"))
register_kind(_tfidf_kind("tfidf_char"))
register_kind(_tfidf_kind("tfidf_nb"))


def _fusion_kinds() -> list[ModelKind]:
    """The fusion heads, the GMU baseline and PM+MO over the CLIP encoders (training/fusion/)."""
    from training.fusion import kinds as fusion

    return [
        ModelKind(name, ("input_ids", "pixel_values"), fusion.BRANCH, fusion.builder(name), train=fusion.trainer(name))
        for name in fusion.FUSION_KINDS
    ]


for _fusion_kind in _fusion_kinds():
    register_kind(_fusion_kind)


def model_inputs(kind: str) -> tuple[str, ...]:
    return model_kind(kind).inputs


def build_model(kind: str, clip_name: str, config: ModelConfig, pretrained: str | None = None) -> nn.Module:
    return model_kind(kind).build(clip_name, config, pretrained)


def run_branches(
    model: nn.Module,
    kind: str,
    input_ids: torch.Tensor,
    pixel_values: torch.Tensor,
    extras: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, TaskLogits]:
    """Logits of every branch a model has (one for most kinds, three for CLIP-multi).

    A model with several branches implements ``forward_branches(input_ids, pixel_values)``; any
    other is called with its ``ModelKind.inputs`` and has the one branch ``ModelKind.branch``.
    ``extras``: the inputs of kinds with their own (``MemeTensors.extras``; OSCAR).
    """
    if hasattr(model, "forward_branches"):
        return model.forward_branches(input_ids, pixel_values)
    tensors = {"input_ids": input_ids, "pixel_values": pixel_values, **(extras or {})}
    spec = model_kind(kind)
    return {spec.branch: model(*(tensors[name] for name in spec.inputs))}


def prediction_branch(kind: str) -> str:
    return model_kind(kind).branch


# --- the two-encoder protocol (PMR, training/pmr.py) -------------------------------------------
#
# A multi-modal model that PMR can rebalance exposes its two encoders' representations:
#
#   encoder_features(input_ids, pixel_values) -> (text_feature [B, D_t], image_feature [B, D_i])
#       what each uni-modal encoder makes of its input before any fusion (for CLIP-multi the text
#       F_cls,t and image F_cls,i); gradients must flow into the encoders. PMR builds class
#       prototypes from these features and adds its prototype losses on them, so no per-modality
#       logits are needed and the fusion can be anything.
#   forward_branches_and_features(input_ids, pixel_values)            (optional, saves a pass)
#       -> (run_branches' dict of logits, (text_feature, image_feature)) from one forward pass.
#
# Models without ``encoder_features`` (the uni-modal kinds) train without PMR.

Features = tuple[torch.Tensor, torch.Tensor]


def has_encoder_features(model: nn.Module) -> bool:
    return callable(getattr(model, "encoder_features", None))


def run_branches_and_features(
    model: nn.Module, kind: str, input_ids: torch.Tensor, pixel_values: torch.Tensor
) -> tuple[dict[str, TaskLogits], Features]:
    """Every branch's logits and the two encoders' features (see the protocol above)."""
    if hasattr(model, "forward_branches_and_features"):
        return model.forward_branches_and_features(input_ids, pixel_values)
    return (run_branches(model, kind, input_ids, pixel_values), model.encoder_features(input_ids, pixel_values))


def save_checkpoint(
    path: Path,
    model: nn.Module,
    kind: str,
    clip_name: str,
    config: ModelConfig,
    extra: dict[str, Any] | None = None,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "kind": kind,
            "clip": clip_name,
            "model_config": asdict(config),
            "state_dict": model.state_dict(),
            **(extra or {}),
        },
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
