"""Reading a meme's printed text (OCR).

OCR is only the fallback: a request's ``text`` field always wins over it. Engines: the repository's
OCR models run by the inference backend (``ppocr``, no torch), EasyOCR on PyTorch (repositories
without OCR models), or none.
"""

from service.inference.ocr.base import NoOcr, OcrEngine, TextBox, join_text, reading_order
from service.inference.ocr.easyocr_engine import EASYOCR_WEIGHTS, EasyOcrEngine, default_easyocr_model_dir
from service.inference.ocr.factory import create_ocr, repository_ocr_models, uses_repository_ocr

__all__ = [
    "EASYOCR_WEIGHTS",
    "EasyOcrEngine",
    "NoOcr",
    "OcrEngine",
    "TextBox",
    "create_ocr",
    "default_easyocr_model_dir",
    "join_text",
    "reading_order",
    "repository_ocr_models",
    "uses_repository_ocr",
]
