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


def read_characters(path: Path) -> list[str]:
    """The recogniser's alphabet, one character per line (blank and space are added by the decoder)."""
    return [line.rstrip("\r") for line in path.read_text(encoding="utf-8").split("\n") if line.rstrip("\r")]


def recognizer_batch(crops: list[np.ndarray], height: int, min_width: int, width_step: int) -> np.ndarray:
    """Crops (BGR uint8) as one float32 batch [N, 3, height, W]: each resized to ``height`` keeping
    its aspect ratio, scaled to [-1, 1], right-padded with 0 to the widest (>= ``min_width``,
    rounded up to a multiple of ``width_step``, so that concurrent requests share shapes)."""
    import cv2

    widths = [max(1, math.ceil(height * c.shape[1] / max(1, c.shape[0]))) for c in crops]
    batch_width = max(min_width, *widths)
    batch_width = math.ceil(batch_width / width_step) * width_step
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
    ) -> None:
        from rapidocr.ch_ppocr_det.utils import DBPostProcess, DetPreProcess
        from rapidocr.ch_ppocr_rec.utils import CTCLabelDecode

        self.entry = entry
        self.backend = backend
        self.det_limit_side_len = det_limit_side_len or entry.det_limit_side_len
        self.det_limit_type = det_limit_type or entry.det_limit_type
        self._preprocess = DetPreProcess(
            self.det_limit_side_len, self.det_limit_type, list(entry.det_mean), list(entry.det_std)
        )
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
        batch = self._preprocess(bgr)
        if batch is None:
            return np.zeros((0, 4, 2), dtype=np.int32)
        detector = self.entry.detector
        probability = self.backend.infer(detector, {detector.inputs[0]: batch})[detector.outputs[0]]
        boxes, _scores = self._boxes(np.asarray(probability), bgr.shape[:2])
        return np.asarray(boxes).reshape(-1, 4, 2)

    def recognize(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """(text, score) per crop: one backend call per ``rec_max_batch`` crops (all of a meme's, usually)."""
        recognizer, entry = self.entry.recognizer, self.entry
        lines: list[tuple[str, float]] = []
        for start in range(0, len(crops), entry.rec_max_batch):
            batch = recognizer_batch(
                crops[start : start + entry.rec_max_batch], entry.rec_height, entry.rec_min_width, entry.rec_width_step
            )
            probabilities = self.backend.infer(recognizer, {recognizer.inputs[0]: batch})[recognizer.outputs[0]]
            decoded, _words = self._decode(np.asarray(probabilities))
            lines += [(str(text), float(score)) for text, score in decoded]
        return lines
