"""OSCAR's configuration: the recipe's options (what to load) and the architecture a checkpoint keeps.

No torch here: the recipe, the CLI and the checkpoint metadata import it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The authors' numbers (reference notes): 50 regions per image, text + tags at most 70 tokens.
DEFAULT_REGIONS = 50
DEFAULT_MAX_LENGTH = 70
BOX_GEOMETRY_DIM = 6  # x1/w, y1/h, x2/w, y2/h, box w/w, box h/h (Oscar/VinVL region features)

DETECTOR_ARCHS = (
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "tiny",  # a few-layer random-initialised Faster R-CNN for tests and --tiny runs
)


@dataclass(frozen=True)
class DetectorConfig:
    """Which Faster R-CNN finds the regions, and how many regions an image keeps.

    ``weights``: a local state-dict file (torchvision's released ``.pth`` files work as they are);
    None means random weights, allowed only for ``arch="tiny"``. ``categories``: class index ->
    tag word(s) (index 0 is the background); None means torchvision's COCO names (91 classes) for
    the named architectures and the first ``num_classes`` of them for ``tiny``.
    """

    arch: str = "fasterrcnn_resnet50_fpn"
    weights: str | None = None
    num_classes: int = 91
    categories: tuple[str, ...] | None = None
    regions: int = DEFAULT_REGIONS
    score_threshold: float = 0.2

    def __post_init__(self) -> None:
        if self.arch not in DETECTOR_ARCHS:
            raise ValueError(f"unknown detector {self.arch!r}; choose from {DETECTOR_ARCHS}")
        if self.regions < 1 or self.num_classes < 2 or not 0 <= self.score_threshold < 1:
            raise ValueError(f"bad detector config: {self}")
        if self.categories is not None and len(self.categories) != self.num_classes:
            raise ValueError(f"{len(self.categories)} category names for {self.num_classes} classes")


@dataclass(frozen=True)
class TinyBert:
    """A random-initialised BERT (tests, --tiny); its WordPiece vocabulary is trained on the texts."""

    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    intermediate_size: int = 128
    vocab_size: int = 2000


@dataclass(frozen=True)
class OscarConfig:
    """The recipe's OSCAR options (``memotion train --models oscar``).

    ``bert``: a local directory with a BERT checkpoint in HuggingFace format (config.json, the
    weights and vocab.txt), e.g. bert-base-uncased or an Oscar pre-trained checkpoint; None: a
    tiny random BERT (``tiny_bert``) with a WordPiece vocabulary trained on the training texts.
    ``region_cache``: a folder for the detector's outputs, reused by runs with the same detector
    and images (default: ``<run>/oscar/regions``).
    """

    bert: str | None = None
    # The SHA-256 of ``bert``'s model.safetensors, checked before loading; ``bert="minilm"`` is the
    # installed all-MiniLM-L6-v2 wheel, whose hash is known (training/pretrained_text/encoder.py).
    bert_sha256: str | None = None
    tiny_bert: TinyBert = field(default_factory=TinyBert)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    max_length: int = DEFAULT_MAX_LENGTH
    region_cache: str | None = None

    def __post_init__(self) -> None:
        if self.max_length < 8:
            raise ValueError(f"max_length {self.max_length} leaves no room for text and tags")


def tiny_oscar_config() -> OscarConfig:
    """The tiny preset: random BERT and detector, small images, 10 regions (seconds on a CPU)."""
    return OscarConfig(
        bert=None,
        detector=DetectorConfig(arch="tiny", num_classes=8, regions=10, score_threshold=0.0),
        max_length=40,
    )


@dataclass(frozen=True)
class OscarArchitecture:
    """What rebuilds an OSCAR model from a checkpoint: kept in ``ModelConfig.oscar``.

    ``bert_config``: ``BertConfig.to_dict()``; ``region_dim``: detector feature + box geometry.
    """

    bert_config: dict[str, Any]
    region_dim: int
    max_length: int = DEFAULT_MAX_LENGTH
    regions: int = DEFAULT_REGIONS

    @classmethod
    def coerce(cls, value: OscarArchitecture | dict[str, Any] | None) -> OscarArchitecture | None:
        """From a checkpoint's ``asdict`` form (a dict) back to the dataclass."""
        if value is None or isinstance(value, OscarArchitecture):
            return value
        return cls(**value)
