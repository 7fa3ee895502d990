"""Which OCR engine the gateway runs (``MEMOTION_OCR``)."""

from __future__ import annotations

from pathlib import Path

from memotion.manifest import Manifest, OcrModelEntry
from service.core.errors import GatewayStartupError
from service.core.settings import GatewaySettings
from service.inference.backends.base import InferenceBackend
from service.inference.ocr.base import NoOcr, OcrEngine


def uses_repository_ocr(settings: GatewaySettings, manifest: Manifest | None) -> bool:
    """True when OCR runs on the repository's OCR models: ``onnx``, or ``auto`` with models there."""
    if settings.ocr == "onnx":
        return True
    return settings.ocr == "auto" and manifest is not None and manifest.ocr is not None


def repository_ocr_models(settings: GatewaySettings, manifest: Manifest) -> list[OcrModelEntry]:
    """The OCR models the backend must load besides the classifiers (none unless they are used)."""
    if manifest.ocr is None or not uses_repository_ocr(settings, manifest):
        return []
    return manifest.ocr.models()


def create_ocr(
    settings: GatewaySettings,
    manifest: Manifest | None = None,
    backend: InferenceBackend | None = None,
    repository_root: Path | None = None,
) -> OcrEngine:
    """``none``; ``easyocr`` (PyTorch); ``onnx`` (the repository's OCR models run by ``backend``);
    ``auto``: ``onnx`` when the repository has OCR models, else ``easyocr``."""
    if settings.ocr == "none":
        return NoOcr()
    if uses_repository_ocr(settings, manifest):
        if manifest is None or manifest.ocr is None or backend is None:
            raise GatewayStartupError(
                "MEMOTION_OCR=onnx but the model repository has no OCR models; re-export it with "
                "`memotion export` (it writes ocr_detector/ and ocr_recognizer/), or set MEMOTION_OCR=easyocr or none"
            )
        from service.inference.ocr.ppocr import PpOcrEngine

        root = Path(repository_root) if repository_root is not None else Path(settings.model_repository)
        return PpOcrEngine(manifest.ocr, root, backend, det_max_side=settings.ocr_detector_max_side or None)
    from service.inference.ocr.easyocr_engine import EasyOcrEngine

    return EasyOcrEngine(settings.ocr_model_dir)
