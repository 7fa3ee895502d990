"""OSCAR's stages in the gateway: a meme's image and text -> the OSCAR model's five inputs.

The region detector is a repository model (``ModelEntry.stage_models``) run by the inference
backend like the classifiers (ONNX Runtime in process, or Triton), one image per call (its input
has no batch axis). Scaling, tags and the BERT WordPiece pair tokenizer are the contract's
(``memotion/oscar_inputs.py``), the very functions training made its inputs with.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from memotion.manifest import ManifestError, ModelEntry
from memotion.oscar_inputs import PairTokenizer, Regions, detector_image, oscar_feeds
from service.inference.backends.base import InferenceBackend


class OscarStages:
    """One OSCAR member's stages: its detector (through ``backend``) and its pair tokenizer."""

    def __init__(self, entry: ModelEntry, repository_root: Path, backend: InferenceBackend) -> None:
        if entry.detector is None or entry.text_tokenizer is None:
            raise ManifestError(f"model {entry.name} has no detector / text_tokenizer stage")
        self.spec = entry.detector
        self.detector = entry.detector.served_model()
        self.backend = backend
        path = Path(repository_root) / entry.text_tokenizer.file
        try:
            self.tokenizer = PairTokenizer(path, entry.text_tokenizer.max_length)
        except Exception as err:
            raise ManifestError(f"{path}: not a usable BERT WordPiece tokenizer: {err}") from err

    def regions(self, image: Image.Image) -> Regions:
        """One backend call of the detector: the image's (features, mask, labels)."""
        spec = self.spec
        array = detector_image(image, spec.min_size, spec.max_size, spec.size_divisor)
        outputs = self.backend.infer(self.detector, {spec.input: array})
        features, mask, labels = (np.asarray(outputs[name]) for name in spec.outputs)
        return features, mask, labels

    def feeds(self, texts: Sequence[str], regions: Sequence[Regions]) -> dict[str, np.ndarray]:
        """The model's inputs for these texts and their images' regions (tags named, pairs tokenized)."""
        return oscar_feeds(texts, regions, self.tokenizer, self.spec.categories)
