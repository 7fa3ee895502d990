"""The region detector as an ONNX graph (one image, dynamic height and width), checked against PyTorch.

Training extracts regions with this graph and the gateway serves the same file, so the model sees
identical regions in both. The check runs on noise images: on flat-colour areas a detector scores
several boxes exactly alike, and which of those tied boxes a runtime keeps is its own choice.
It asks for the same boxes and labels and features equal up to a relative 1e-3: a ResNet-50 +
FPN's convolutions accumulate in a different order in ONNX Runtime (measured on a ResNet-50 FPN
with rescaled random weights: 3e-4 of the largest feature, boxes within 0.2 px); the tiny test
detector agrees to 1e-6.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from memotion.oscar_inputs import DETECTOR_INPUT, DETECTOR_OUTPUTS
from training.export import OPSET
from training.oscar.detector import RegionDetector

RELATIVE_TOLERANCE = 1e-3


class DetectorExportError(RuntimeError):
    pass


def check_images(detector: RegionDetector, seed: int = 0) -> list[np.ndarray]:
    """Noise images of three different scaled shapes (landscape, portrait, square)."""
    min_size, max_size, divisor = detector.image_scaling
    rng = np.random.default_rng(seed)
    short = max(divisor, min_size // divisor * divisor)
    long = max(short + divisor, min(max_size, short * 4 // 3) // divisor * divisor)
    return [rng.random((3, h, w), dtype=np.float32) for h, w in ((short, long), (long, short), (short, short))]


def detector_parity_error(detector: RegionDetector, path: Path, images: list[np.ndarray]) -> float:
    """Largest |ONNX Runtime - PyTorch| over the region features relative to the largest |feature|
    (at least 1); inf if the regions (mask, labels) differ."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    error = 0.0
    for image in images:
        got = session.run(list(DETECTOR_OUTPUTS), {DETECTOR_INPUT: image})
        with torch.no_grad():
            expected = [t.numpy() for t in detector(torch.from_numpy(image))]
        if not (np.array_equal(got[1], expected[1]) and np.array_equal(got[2], expected[2])):
            return float("inf")
        scale = max(1.0, float(np.abs(expected[0]).max()))
        error = max(error, float(np.abs(got[0] - expected[0]).max()) / scale)
    return error


def export_detector(detector: RegionDetector, path: Path) -> float:
    """Write ``detector`` to ``path`` as ONNX; returns the relative parity error (raises above
    ``RELATIVE_TOLERANCE``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    images = check_images(detector)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings: the parity check below covers them
        torch.onnx.export(
            detector,
            (torch.from_numpy(images[0]),),
            str(path),
            input_names=[DETECTOR_INPUT],
            output_names=list(DETECTOR_OUTPUTS),
            opset_version=OPSET,
            dynamic_axes={DETECTOR_INPUT: {1: "height", 2: "width"}},
            dynamo=False,
        )
    onnx.checker.check_model(str(path))
    error = detector_parity_error(detector, path, images)
    if error > RELATIVE_TOLERANCE:
        path.unlink()
        raise DetectorExportError(f"the detector's ONNX graph differs from PyTorch (relative max |diff| {error:.2e})")
    return error
