"""(image, text) -> OSCAR's input tensors, without torch: numpy, PIL, ``tokenizers``, onnxruntime.

Training runs these same functions (with the PyTorch detector in place of the ONNX one), so
training and serving scale images and tokenize text + tags identically. Nothing here imports
torch or the training code: the gateway can use this module as it is (see ``OscarFeeder``), and
training extracts regions with the same ONNX detector (``OnnxRegionDetector``).

OSCAR's sequence (Li et al. 2020): ``[CLS] text [SEP] tags [SEP]`` as BERT WordPiece tokens
(token type 0 for the text, 1 for the tags), truncated longest-first to ``max_length``, then the
detected regions (features + box geometry).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from tokenizers import Tokenizer

if TYPE_CHECKING:
    from memotion.manifest import ModelEntry

# The input names of the OSCAR ONNX model, in its forward's argument order.
TEXT_INPUTS = ("oscar_input_ids", "oscar_token_type_ids", "oscar_attention_mask")
REGION_INPUTS = ("region_features", "region_mask")
OSCAR_INPUTS = TEXT_INPUTS + REGION_INPUTS
# The region detector's ONNX input and outputs.
DETECTOR_INPUT = "image"
DETECTOR_OUTPUTS = ("region_features", "region_mask", "region_labels")
# Class names that are not objects: never used as tags.
NOT_A_TAG = frozenset({"__background__", "N/A"})


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
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        pad_id = self._tokenizer.token_to_id("[PAD]")
        if pad_id is None or self._tokenizer.token_to_id("[CLS]") is None:
            raise ValueError(f"{tokenizer_file}: not a BERT WordPiece tokenizer (no [PAD]/[CLS])")
        self.max_length = max_length
        self.pad_id = pad_id
        self._tokenizer.enable_truncation(max_length, strategy="longest_first")
        self._tokenizer.enable_padding(length=max_length, pad_id=pad_id, pad_token="[PAD]")

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
    regions: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    tokenizer: PairTokenizer,
    categories: Sequence[str],
) -> dict[str, np.ndarray]:
    """Texts and each image's detector outputs -> the OSCAR model's five inputs."""
    tags = [tag_text(labels, mask, categories) for _, mask, labels in regions]
    feeds = tokenizer(texts, tags)
    feeds["region_features"] = np.stack([f for f, _, _ in regions]).astype(np.float32)
    feeds["region_mask"] = np.stack([m for _, m, _ in regions]).astype(np.int64)
    return feeds


def available_providers() -> list[str]:
    """ONNX Runtime's CUDA provider when this machine has it, then the CPU."""
    import onnxruntime as ort

    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]


class OnnxRegionDetector:
    """The exported region detector (ONNX Runtime): one PIL image -> (features, mask, labels).

    Training extracts its regions with this too, so the model trains on exactly what it is served.
    """

    def __init__(
        self,
        detector_file: str | Path,
        *,
        min_size: int,
        max_size: int,
        size_divisor: int,
        providers: Sequence[str] | None = None,
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(detector_file), sess_options=options, providers=list(providers or available_providers())
        )
        self.min_size, self.max_size, self.size_divisor = min_size, max_size, size_divisor

    def run(self, array: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """On a scaled [3, H, W] array (``detector_image``)."""
        features, mask, labels = self._session.run(list(DETECTOR_OUTPUTS), {DETECTOR_INPUT: array})
        return features, mask, labels

    def detect(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.run(detector_image(image, self.min_size, self.max_size, self.size_divisor))


class OscarFeeder:
    """The gateway's first OSCAR stage: images and texts -> the OSCAR model's five inputs.

    Runs the exported detector, names the tags and tokenizes text + tags, as the manifest's OSCAR
    entry says (its ``detector`` and ``text_tokenizer``; ``repository`` holds their files).
    """

    def __init__(self, entry: ModelEntry, repository: str | Path, providers: Sequence[str] | None = None) -> None:
        if entry.detector is None or entry.text_tokenizer is None:
            raise ValueError(f"model {entry.name} has no detector / text_tokenizer stage")
        spec = entry.detector
        self.detector = OnnxRegionDetector(
            Path(repository) / spec.file,
            min_size=spec.min_size,
            max_size=spec.max_size,
            size_divisor=spec.size_divisor,
            providers=providers,
        )
        self.tokenizer = PairTokenizer(Path(repository) / entry.text_tokenizer.file, entry.text_tokenizer.max_length)
        self.categories = spec.categories

    def __call__(self, images: Sequence[Image.Image], texts: Sequence[str]) -> dict[str, np.ndarray]:
        regions = [self.detector.detect(image) for image in images]
        return oscar_feeds(texts, regions, self.tokenizer, self.categories)
