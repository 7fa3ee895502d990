"""Image preprocessing shared by training and the gateway (numpy + PIL, no torch).

Equal to open_clip's validation transform (Resize shortest edge bicubic -> CenterCrop -> ToTensor
-> Normalize); ``tests/test_preprocess.py`` checks that against open_clip itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from memotion.manifest import Preprocessing


def resize_shortest_edge(image: Image.Image, size: int) -> Image.Image:
    """Scale so the shorter side is ``size`` (torchvision's rule for the longer side)."""
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    if short == size:
        return image
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    return image.resize((new_w, new_h), Image.Resampling.BICUBIC)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    left = int(round((width - size) / 2.0))
    top = int(round((height - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def image_to_array(image: Image.Image, spec: Preprocessing) -> np.ndarray:
    """One PIL image -> float32 CHW array, normalised as ``spec`` says."""
    rgb = image.convert("RGB")
    cropped = center_crop(resize_shortest_edge(rgb, spec.image_size), spec.image_size)
    array = np.asarray(cropped, dtype=np.float32) / 255.0
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    return ((array - mean) / std).transpose(2, 0, 1).copy()


def images_to_batch(images: Sequence[Image.Image], spec: Preprocessing) -> np.ndarray:
    """Several PIL images -> float32 NCHW batch."""
    return np.stack([image_to_array(image, spec) for image in images]).astype(np.float32)
