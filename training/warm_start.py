"""Warm starts between training stages (paper Sec. 4): a model's body -- everything but its classifier
heads -- copied from a checkpoint of the same kind that was trained with other heads.

The binary pre-training stage (pretrainuni) trains CLIP-text / CLIP-image with one 'hateful' head;
the Memotion stage then starts from their encoders (and the text model's BiLSTM) with fresh
Task A / Task C heads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from memotion.labels import TaskSpec
from training.models.heads import MultiTaskHead


def head_prefixes(model: nn.Module) -> tuple[str, ...]:
    """State-dict prefixes of the model's classifier heads (its ``MultiTaskHead`` modules)."""
    return tuple(f"{name}." for name, module in model.named_modules() if name and isinstance(module, MultiTaskHead))


def replace_heads(model: nn.Module, tasks: Sequence[TaskSpec]) -> nn.Module:
    """Give every ``MultiTaskHead`` child of ``model`` new heads for ``tasks`` (same sizes)."""
    for name, module in list(model.named_children()):
        if isinstance(module, MultiTaskHead):
            hidden_layer = module.heads[0].net[0]
            dropout = module.heads[0].net[2].p
            setattr(model, name, MultiTaskHead(hidden_layer.in_features, hidden_layer.out_features, dropout, tasks))
    return model


def load_body(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Copy every non-head tensor of ``state_dict`` into ``model``; returns the keys copied.

    The model's body must be complete in the checkpoint, with the same shapes (same CLIP config and
    model sizes): anything else is an error, never a silent partial load.
    """
    heads = head_prefixes(model)
    target = model.state_dict()
    body = {k: v for k, v in target.items() if not k.startswith(heads)}
    source = {k: v for k, v in state_dict.items() if not k.startswith(heads)}
    missing = sorted(set(body) - set(source))
    if missing:
        raise ValueError(
            f"the checkpoint lacks {len(missing)} of the model's weights, e.g. "
            f"{missing[:3]}: was it trained for another model kind?"
        )
    wrong = [k for k in body if source[k].shape != body[k].shape]
    if wrong:
        raise ValueError(
            f"shape mismatch for {wrong[:3]} (checkpoint {tuple(source[wrong[0]].shape)}, "
            f"model {tuple(body[wrong[0]].shape)}): another CLIP config or model size?"
        )
    model.load_state_dict({**target, **{k: source[k] for k in body}})
    return list(body)


def warm_start(model: nn.Module, checkpoint: Path, kind: str | None = None) -> list[str]:
    """Load the body of ``checkpoint`` (written by ``save_checkpoint``) into ``model``."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"pre-trained checkpoint {checkpoint} does not exist")
    payload = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if kind is not None and payload.get("kind") not in (None, kind):
        raise ValueError(f"{checkpoint} holds a {payload['kind']} model, not {kind}")
    return load_body(model, payload["state_dict"])
