"""PP-OCR (PaddleOCR's DB text detector + CTC recogniser) as served models.

The two networks are manifest models (``manifest.ocr``), run by the gateway's inference backend
like the classifiers: ONNX Runtime in process, or Triton. Pre- and post-processing are rapidocr's
(its DB box decoding, crops and CTC decoding; numpy + OpenCV, no torch); the networks never run
inside rapidocr. No lock: backend calls run concurrently, so OCR throughput grows with cores and
with Triton instances.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from memotion.manifest import OcrEntry
from service.inference.backends.base import InferenceBackend
from service.inference.ocr.base import TextBox, join_text

WARMUP_WIDTHS = 7  # padded recogniser widths warmed up: rec_min_width and the next 6 steps (320 to 704 px)
WARMUP_BATCH = 4  # crops per call warmed up at each of them: 1 to 4 (what 64 real memes gave most)


def read_characters(path: Path) -> list[str]:
    """The recogniser's alphabet, one character per line (blank and space are added by the decoder)."""
    return [line.rstrip("\r") for line in path.read_text(encoding="utf-8").split("\n") if line.rstrip("\r")]


def crop_width(crop: np.ndarray, height: int) -> int:
    """A crop's width once resized to ``height`` keeping its aspect ratio."""
    return max(1, math.ceil(height * crop.shape[1] / max(1, crop.shape[0])))


def padded_width(width: int, min_width: int, width_step: int) -> int:
    """The recogniser input width a crop of ``width`` is padded to: >= ``min_width``, a multiple of ``width_step``."""
    return math.ceil(max(min_width, width) / width_step) * width_step


def width_groups(widths: list[int], min_width: int, width_step: int, max_batch: int) -> list[list[int]]:
    """Crop indices in recogniser calls: one call per padded width (at most ``max_batch`` crops each),
    so a short line is not padded to the meme's longest one (the recogniser's cost grows with the
    width it reads). Narrowest first; every index once."""
    by_width: dict[int, list[int]] = {}
    for index, width in enumerate(widths):
        by_width.setdefault(padded_width(width, min_width, width_step), []).append(index)
    return [
        group[start : start + max_batch]
        for _, group in sorted(by_width.items())
        for start in range(0, len(group), max_batch)
    ]


def detector_side(shape: tuple[int, ...], limit_side_len: int, limit_type: str) -> float:
    """The longest side PP-OCR's detector rule gives an image of ``shape`` (height, width): "max"
    scales the longest side down to ``limit_side_len``, "min" the shortest up to it."""
    height, width = shape[:2]
    if limit_type == "max":
        ratio = min(1.0, limit_side_len / max(height, width))
    else:
        ratio = max(1.0, limit_side_len / min(height, width))
    return max(height, width) * ratio


def recognizer_warmup_shapes(
    entry: OcrEntry, widths: int = WARMUP_WIDTHS, batch: int = WARMUP_BATCH
) -> list[tuple[int, int, int, int]]:
    """The recogniser input shapes [N, 3, height, W] most real memes give: 1 to ``batch`` crops at
    each of the first ``widths`` padded widths."""
    first = padded_width(entry.rec_min_width, entry.rec_min_width, entry.rec_width_step)
    return [
        (crops, 3, entry.rec_height, first + step * entry.rec_width_step)
        for step in range(widths)
        for crops in range(1, batch + 1)
    ]


def recognizer_batch(crops: list[np.ndarray], height: int, min_width: int, width_step: int) -> np.ndarray:
    """Crops (BGR uint8) as one float32 batch [N, 3, height, W]: each resized to ``height`` keeping
    its aspect ratio, scaled to [-1, 1], right-padded with 0 to the widest (>= ``min_width``,
    rounded up to a multiple of ``width_step``, so that concurrent requests share shapes)."""
    import cv2

    widths = [crop_width(c, height) for c in crops]
    batch_width = padded_width(max(widths), min_width, width_step)
    batch = np.zeros((len(crops), 3, height, batch_width), dtype=np.float32)
    for row, (crop, width) in enumerate(zip(crops, widths)):
        resized = cv2.resize(crop, (min(width, batch_width), height)).astype(np.float32)
        batch[row, :, :, : resized.shape[1]] = resized.transpose(2, 0, 1) / 127.5 - 1.0
    return batch


class PpOcrEngine:
    """Detect the text lines of a meme, recognise all of them in one batched call, join them."""

    name = "ppocr"
    thread_safe = True

    def __init__(
        self,
        entry: OcrEntry,
        repository_root: Path,
        backend: InferenceBackend,
        *,
        det_limit_side_len: int | None = None,
        det_limit_type: str | None = None,
        det_max_side: int | None = None,
    ) -> None:
        """``det_limit_side_len`` / ``det_limit_type``: the detector's input size rule (default: the
        manifest's). ``det_max_side``: besides, the detector never reads more than this longest side
        (its cost grows with the pixels; boxes are mapped back to the full image, whose crops the
        recogniser reads)."""
        from rapidocr.ch_ppocr_det.utils import DBPostProcess, DetPreProcess
        from rapidocr.ch_ppocr_rec.utils import CTCLabelDecode

        self.entry = entry
        self.repository_root = Path(repository_root)
        self.backend = backend
        self.det_limit_side_len = det_limit_side_len or entry.det_limit_side_len
        self.det_limit_type = det_limit_type or entry.det_limit_type
        self.det_max_side = det_max_side
        self._preprocess = DetPreProcess(
            self.det_limit_side_len, self.det_limit_type, list(entry.det_mean), list(entry.det_std)
        )
        self._capped = DetPreProcess(det_max_side or 1, "max", list(entry.det_mean), list(entry.det_std))
        self._boxes = DBPostProcess(
            thresh=entry.det_thresh,
            box_thresh=entry.det_box_thresh,
            unclip_ratio=entry.det_unclip_ratio,
            use_dilation=True,
            score_mode="fast",
        )
        self._decode = CTCLabelDecode(character=read_characters(Path(repository_root) / entry.characters_file))

    def read(self, image: Image.Image) -> str:
        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
        return join_text(self.read_boxes(bgr))

    def read_boxes(self, bgr: np.ndarray) -> list[TextBox]:
        """The recognised lines of a BGR image with their boxes (lines below ``min_score`` dropped)."""
        from rapidocr.utils.process_img import get_rotate_crop_image

        boxes = self.detect(bgr)
        if len(boxes) == 0:
            return []
        crops = [get_rotate_crop_image(bgr, box.astype(np.float32)) for box in boxes]
        lines = self.recognize(crops)
        return [
            TextBox.from_points(box.tolist(), text)
            for box, (text, score) in zip(boxes, lines)
            if score >= self.entry.min_score
        ]

    def detect(self, bgr: np.ndarray) -> np.ndarray:
        """Text boxes [N, 4, 2] (int32, image pixels) of a BGR image."""
        capped = self.det_max_side is not None and self.det_max_side < detector_side(
            bgr.shape[:2], self.det_limit_side_len, self.det_limit_type
        )
        batch = self._capped(bgr) if capped else self._preprocess(bgr)
        if batch is None:
            return np.zeros((0, 4, 2), dtype=np.int32)
        detector = self.entry.detector
        probability = self.backend.infer(detector, {detector.inputs[0]: batch})[detector.outputs[0]]
        boxes, _scores = self._boxes(np.asarray(probability), bgr.shape[:2])
        return np.asarray(boxes).reshape(-1, 4, 2)

    def warm_up(self) -> int:
        """Run the recogniser once at each of ``recognizer_warmup_shapes`` (an engine that prepares
        kernels per input shape, OpenVINO, then does not pay for it on the first memes); the shape count."""
        recognizer = self.entry.recognizer
        shapes = recognizer_warmup_shapes(self.entry)
        for shape in shapes:
            self.backend.infer(recognizer, {recognizer.inputs[0]: np.zeros(shape, dtype=np.float32)})
        return len(shapes)

    def recognize(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """(text, score) per crop, in order: one backend call per padded width (``width_groups``)."""
        recognizer, entry = self.entry.recognizer, self.entry
        widths = [crop_width(crop, entry.rec_height) for crop in crops]
        lines: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        for group in width_groups(widths, entry.rec_min_width, entry.rec_width_step, entry.rec_max_batch):
            batch = recognizer_batch(
                [crops[i] for i in group], entry.rec_height, entry.rec_min_width, entry.rec_width_step
            )
            probabilities = self.backend.infer(recognizer, {recognizer.inputs[0]: batch})[recognizer.outputs[0]]
            decoded, _words = self._decode(np.asarray(probabilities))
            for index, (text, score) in zip(group, decoded):
                lines[index] = (str(text), float(score))
        return lines
