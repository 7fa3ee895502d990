"""Static INT8 of the OCR text detector (``memotion export --quantize int8``).

PP-OCR's DB detector is a Conv network: ONNX Runtime's static QDQ quantisation (Conv weights
signed INT8 per output channel, activations unsigned INT8 with ranges calibrated (MinMax) on the
detector inputs of real memes, shaped as the gateway feeds them: longest side scaled down to
``CALIBRATION_SIDE``) runs its Convs on the integer units (AVX-512 VNNI here). Measured on 40
real CM-Off-Meme memes (issue 21, bench/ocr_int8.py): the detector graph 2.05x faster, CER mean
+0.007, median +0.002. The recogniser stays FP32: static INT8 gave it 1.06 to 1.11x at a CER
cost, not worth it. The graphs are
opset 11 as rapidocr ships them; per-channel QDQ needs opset 13, so the detector is converted
first (same operators).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from memotion.manifest import OcrEntry

CALIBRATION_SIDE = 384  # the gateway's default detector cap (MEMOTION_OCR_DETECTOR_MAX_SIDE)
CALIBRATION_MEMES = 30
METHOD = "int8 static QDQ (Conv weights per channel, uint8 activations calibrated on {n} real memes)"


def detector_feeds(images: Sequence[Image.Image], side: int = CALIBRATION_SIDE) -> list[np.ndarray]:
    """The detector's input [1, 3, H, W] for each image, as the served engine prepares it (rapidocr's
    DetPreProcess, the manifest's default normalisation, the longest side capped at ``side``)."""
    from rapidocr.ch_ppocr_det.utils import DetPreProcess

    fields = OcrEntry.model_fields
    prepare = DetPreProcess(side, "max", list(fields["det_mean"].default), list(fields["det_std"].default))
    feeds = []
    for image in images:
        batch = prepare(np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1]))
        if batch is not None:
            feeds.append(np.asarray(batch, dtype=np.float32))
    return feeds


def quantize_detector_int8(graph: Path, input_name: str, feeds: Sequence[np.ndarray]) -> None:
    """Replace the FP32 detector at ``graph`` by its static INT8 (QDQ) graph calibrated on ``feeds``."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds: Iterator[np.ndarray] = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            feed = next(self._feeds, None)
            return None if feed is None else {input_name: feed}

    if not feeds:
        raise ValueError("static INT8 of the OCR detector needs at least one calibration meme")
    with tempfile.TemporaryDirectory() as scratch:
        opset13 = Path(scratch) / "opset13.onnx"
        onnx.save(version_converter.convert_version(onnx.load(str(graph)), 13), str(opset13))
        quantize_static(
            str(opset13),
            str(graph),
            Feeds(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )


def calibration_memes(summary: dict, limit: int = CALIBRATION_MEMES) -> list[Image.Image]:
    """Up to ``limit`` of the run's validation memes (RGB), the detector's calibration set; empty
    when they are not on the exporting machine (the detector then stays FP32)."""
    from training.quantize import record_images, validation_records

    return record_images(validation_records(summary, limit))
