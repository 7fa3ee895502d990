"""open_clip backbones: create a CLIP by config name and pretrained tag or local checkpoint.

Real use: ``create_clip("ViT-B-32", "openai")`` (downloads unless cached) or a local checkpoint path.
Tests and the demo: the tiny random-initialised ``memotion-tiny`` config shipped in ``configs/``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import open_clip
from open_clip.model import CLIP

CONFIG_DIR = Path(__file__).parent / "configs"
TINY_CLIP = "memotion-tiny"


@lru_cache(maxsize=1)
def register_model_configs() -> None:
    """Make the project's configs (``configs/*.json``) known to open_clip by file name."""
    open_clip.add_model_config(CONFIG_DIR)


def normalise_pretrained(pretrained: str | None) -> str | None:
    """``None``/"none"/"" mean random initialisation."""
    if pretrained is None or pretrained.strip().lower() in {"", "none", "random"}:
        return None
    return pretrained


def create_clip(name: str, pretrained: str | None = None) -> CLIP:
    """An open_clip CLIP in train mode.

    ``pretrained``: None for random weights, an open_clip tag (``openai``, ``laion2b_s34b_b79k``)
    or the path of a local checkpoint (a state dict, or a dict with ``state_dict``).
    """
    register_model_configs()
    pretrained = normalise_pretrained(pretrained)
    if pretrained is not None and Path(pretrained).suffix and not Path(pretrained).exists():
        raise FileNotFoundError(f"CLIP checkpoint {pretrained} does not exist")
    model = open_clip.create_model(name, pretrained=pretrained)
    if not isinstance(model, CLIP):
        raise TypeError(f"{name} is a {type(model).__name__}; only open_clip CLIP models are supported")
    return model


def clip_context_length(model: CLIP) -> int:
    return int(model.context_length)


def clip_image_size(model: CLIP) -> int:
    size = model.visual.image_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)
