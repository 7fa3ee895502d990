"""The region detector with ONNX Runtime, and the feeder that runs it: training's OSCAR inputs.

The torch-free input code (image scaling, tags, the WordPiece pair tokenizer, the feeds) is the
contract's ``memotion/oscar_inputs.py``, which the gateway runs too; training extracts regions with
the same ONNX detector (``OnnxRegionDetector``), so the model trains on exactly what it is served.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from memotion.oscar_inputs import (
    DETECTOR_INPUT,
    DETECTOR_OUTPUTS,
    PairTokenizer,
    Regions,
    detector_image,
    oscar_feeds,
)

if TYPE_CHECKING:
    from memotion.manifest import ModelEntry


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

    def run(self, array: np.ndarray) -> Regions:
        """On a scaled [3, H, W] array (``detector_image``)."""
        features, mask, labels = self._session.run(list(DETECTOR_OUTPUTS), {DETECTOR_INPUT: array})
        return features, mask, labels

    def detect(self, image: Image.Image) -> Regions:
        return self.run(detector_image(image, self.min_size, self.max_size, self.size_divisor))


class OscarFeeder:
    """Images and texts -> the OSCAR model's five inputs, as the gateway makes them.

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
