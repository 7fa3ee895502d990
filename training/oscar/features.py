"""The detector's outputs for a whole split, computed once per image and cached on disk.

Regions come from the exported ONNX detector (``OnnxRegionDetector``), the graph the gateway
serves. A cache file is named by the detector graph's hash and a fingerprint of the images (paths,
sizes, modification times), so a changed detector or data set never reuses stale regions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from memotion.progress import progress_bar
from training.oscar.inputs import OnnxRegionDetector


@dataclass
class SplitRegions:
    """Per image: ``features`` [N, R, D] float32, ``mask`` [N, R] int64, ``labels`` [N, R] int64."""

    features: np.ndarray
    mask: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def per_image(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        return list(zip(self.features, self.mask, self.labels))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def images_fingerprint(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        stat = Path(path).stat()
        digest.update(f"{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def detect_regions(
    detector: OnnxRegionDetector,
    image_paths: Sequence[Path],
    progress: bool = False,
    desc: str = "regions",
) -> SplitRegions:
    """Run ``detector`` on every image (scaled as the gateway scales them)."""
    rows = []
    for path in progress_bar(image_paths, desc=desc, disable=not progress, leave=False):
        with Image.open(path) as image:
            rows.append(detector.detect(image))
    if not rows:
        raise ValueError("no images to detect regions in")
    return SplitRegions(*(np.stack(column) for column in zip(*rows)))


def cached_regions(
    detector: OnnxRegionDetector,
    detector_hash: str,
    image_paths: Sequence[Path],
    cache_dir: Path,
    progress: bool = False,
    desc: str = "regions",
) -> SplitRegions:
    """``detect_regions``, read from ``cache_dir`` when this detector already saw these images."""
    path = cache_dir / f"regions-{detector_hash[:16]}-{images_fingerprint(image_paths)}.npz"
    if path.is_file():
        with np.load(path) as cached:
            return SplitRegions(cached["features"], cached["mask"], cached["labels"])
    regions = detect_regions(detector, image_paths, progress, desc)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".partial.npz")
    np.savez(partial, features=regions.features, mask=regions.mask, labels=regions.labels)
    partial.replace(path)
    return regions
