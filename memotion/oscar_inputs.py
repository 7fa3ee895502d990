"""(image, text) -> OSCAR's input tensors, without torch: numpy, PIL, ``tokenizers``.

Training and the gateway both run these functions, so they scale images and tokenize text + tags
identically. The region detector itself runs elsewhere: in training with ONNX Runtime
(``training/oscar/inputs.py``), in the gateway through its inference backend.

OSCAR's sequence (Li et al. 2020): ``[CLS] text [SEP] tags [SEP]`` as BERT WordPiece tokens
(token type 0 for the text, 1 for the tags), truncated longest-first to ``max_length``, then the
detected regions (features + box geometry).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from memotion.manifest import REGION_INPUTS, WORDPIECE_INPUTS
from memotion.tokenizer import load_wordpiece

# The input names of the OSCAR ONNX model, in its forward's argument order.
TEXT_INPUTS = WORDPIECE_INPUTS
OSCAR_INPUTS = TEXT_INPUTS + REGION_INPUTS
# The region detector's ONNX input and outputs.
DETECTOR_INPUT = "image"
DETECTOR_OUTPUTS = ("region_features", "region_mask", "region_labels")
# Class names that are not objects: never used as tags.
NOT_A_TAG = frozenset({"__background__", "N/A"})

Regions = tuple[np.ndarray, np.ndarray, np.ndarray]  # one image's (features, mask, labels)


def scaled_size(width: int, height: int, min_size: int, max_size: int, divisor: int) -> tuple[int, int]:
    """torchvision's detection resize rule (shorter side to ``min_size`` unless the longer side would
    pass ``max_size``), each side then rounded to a multiple of ``divisor``; returns (width, height)."""
    scale = min(min_size / min(width, height), max_size / max(width, height))
    return tuple(
        max(divisor, int(round(side * scale / divisor)) * divisor)  # type: ignore[return-value]
        for side in (width, height)
    )


def detector_image(image: Image.Image, min_size: int, max_size: int, divisor: int) -> np.ndarray:
    """A PIL image -> the detector's input: float32 [3, H, W] RGB in [0, 1], scaled (bilinear)."""
    rgb = image.convert("RGB")
    size = scaled_size(rgb.width, rgb.height, min_size, max_size, divisor)
    if size != rgb.size:
        rgb = rgb.resize(size, Image.Resampling.BILINEAR)
    return (np.asarray(rgb, dtype=np.float32) / 255.0).transpose(2, 0, 1).copy()


def tag_text(labels: np.ndarray, mask: np.ndarray, categories: Sequence[str]) -> str:
    """The object tags of one image: its detected classes' names in score order, as Oscar does."""
    names = (categories[int(label)] for label, keep in zip(labels, mask) if keep)
    return " ".join(name for name in names if name not in NOT_A_TAG)


class PairTokenizer:
    """BERT WordPiece over (text, tags) pairs from a ``tokenizers`` JSON file.

    ``__call__`` returns int64 [B, max_length] arrays named as the OSCAR model's text inputs.
    """

    def __init__(self, tokenizer_file: str | Path, max_length: int) -> None:
        self._tokenizer, self.pad_id = load_wordpiece(tokenizer_file, max_length, strategy="longest_first")
        self.max_length = max_length

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size()

    def __call__(self, texts: Sequence[str], tags: Sequence[str]) -> dict[str, np.ndarray]:
        if len(texts) != len(tags):
            raise ValueError(f"{len(texts)} texts but {len(tags)} tag strings")
        encodings = self._tokenizer.encode_batch(list(zip(texts, tags)))
        arrays = [
            np.array([getattr(e, field) for e in encodings], dtype=np.int64).reshape(-1, self.max_length)
            for field in ("ids", "type_ids", "attention_mask")
        ]
        return dict(zip(TEXT_INPUTS, arrays))


def oscar_feeds(
    texts: Sequence[str],
    regions: Sequence[Regions],
    tokenizer: PairTokenizer,
    categories: Sequence[str],
) -> dict[str, np.ndarray]:
    """Texts and each image's detector outputs -> the OSCAR model's five inputs."""
    tags = [tag_text(labels, mask, categories) for _, mask, labels in regions]
    feeds = tokenizer(texts, tags)
    feeds["region_features"] = np.stack([f for f, _, _ in regions]).astype(np.float32)
    feeds["region_mask"] = np.stack([m for _, m, _ in regions]).astype(np.int64)
    return feeds
