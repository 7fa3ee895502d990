"""Static INT8 OCR graphs against FP32: speed per meme and character error rate, same memes, same run.

    python bench/ocr_int8.py                        # 40 real memes, 2 interleaved rounds
    python bench/ocr_int8.py --memes 20 --rounds 1

Exports OCR twice (training/ocr_export.py): FP32, and with the detector static INT8 as
``memotion export --quantize int8`` serves it (training/ocr_quantize.py), calibrated on 30 real
memes that are not measured (20 CM-Off-Meme, 10 Memotion 1). A third variant also quantises the
recogniser the same way (calibrated on the crops the served engine feeds it for those memes), which
export does not do. With openvino installed, two more read through the gateway's OpenVINO engine
with its ``bf16`` precision (AMX): the INT8 repository as ``MEMOTION_ENGINE=openvino
MEMOTION_OPENVINO_PRECISION=bf16`` serves it (INT8 detector on ONNX Runtime, recogniser on
OpenVINO BF16), and both FP32 graphs on OpenVINO BF16. Every variant reads each meme with the
gateway's engine (detector capped at 384 px, OCR copy at 1280 px), interleaved in alternating
order; printed per variant: ms per meme, detector and recogniser ms, ratios to FP32, CER mean and
median against the human captions.
Writes bench/results/ocr_int8.json. Timings on a shared machine: compare the ratios.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from memotion.manifest import OcrEntry, OcrModelEntry
from service.inference.backends.ort_backend import OnnxRuntimeBackend
from service.inference.imaging import scaled_for_ocr
from service.inference.ocr.ppocr import PpOcrEngine
from training.metrics import character_error_rate
from training.ocr_export import export_ocr
from training.ocr_quantize import CALIBRATION_SIDE, quantize_detector_int8

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results" / "ocr_int8.json"


class TimedBackend:
    """The engine's backend, timing each model and keeping the recogniser's inputs."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.seconds, self.recognizer_feeds = inner, {}, []

    def infer(self, model: OcrModelEntry, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if model.kind == "ocr_recognizer":
            self.recognizer_feeds.append(np.array(inputs[model.inputs[0]]))
        start = time.perf_counter()
        out = self.inner.infer(model, inputs)
        self.seconds[model.name] = self.seconds.get(model.name, 0.0) + time.perf_counter() - start
        return out


def memes(folder: str, count: int, skip: int = 0) -> list[tuple[Image.Image, str]]:
    """``count`` captioned memes of ``folder`` (seeded order, after ``skip``), RGB."""
    root = DATA / folder
    rows = [r for r in csv.DictReader((root / "labels.csv").open(encoding="utf-8")) if r["text"].strip()]
    random.Random(0).shuffle(rows)
    return [(Image.open(root / r["image_path"]).convert("RGB"), r["text"]) for r in rows[skip : skip + count]]


def engine(root: Path, entry: OcrEntry, openvino_precision: str | None = None) -> PpOcrEngine:
    """The gateway's OCR engine on ``entry``: ONNX Runtime, or the OpenVINO engine at ``openvino_precision``."""
    if openvino_precision is None:
        backend: Any = OnnxRuntimeBackend(root, entry.models())
    else:
        from service.inference.backends.openvino_backend import OpenVinoBackend

        backend = OpenVinoBackend(root, entry.models(), precision=openvino_precision)
    return PpOcrEngine(entry, root, TimedBackend(backend), det_max_side=CALIBRATION_SIDE)


def openvino_variants(scratch: Path, fp32: OcrEntry, int8: OcrEntry) -> dict[str, PpOcrEngine]:
    """The OpenVINO BF16 rows, when openvino is installed (else none)."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        print("openvino is not installed: no OpenVINO rows (pip install 'memotion[openvino]')")
        return {}
    return {
        "int8 det + rec openvino bf16": engine(scratch / "int8", int8, "bf16"),
        "fp32 graphs, openvino bf16": engine(scratch / "fp32", fp32, "bf16"),
    }


def variants(scratch: Path, calibration: list[Image.Image]) -> dict[str, PpOcrEngine]:
    fp32 = export_ocr(scratch / "fp32")
    int8 = export_ocr(scratch / "int8", int8_calibration=calibration)
    both = export_ocr(scratch / "both", int8_calibration=calibration)
    capture = engine(scratch / "fp32", fp32)
    for image in calibration:
        capture.read(scaled_for_ocr(image, 1280))
    feeds = capture.backend.recognizer_feeds  # type: ignore[attr-defined]
    quantize_detector_int8(scratch / "both" / both.recognizer.file, both.recognizer.inputs[0], feeds)
    return {
        "fp32": engine(scratch / "fp32", fp32),
        "int8 detector (export)": engine(scratch / "int8", int8),
        "int8 detector + recogniser": engine(scratch / "both", both),
        **openvino_variants(scratch, fp32, int8),
    }


def measure(engines: dict[str, PpOcrEngine], sample: list[tuple[Image.Image, str]], rounds: int) -> dict:
    copies = [(scaled_for_ocr(image, 1280), caption) for image, caption in sample]
    for ocr in engines.values():
        ocr.read(copies[0][0])
        ocr.backend.seconds = {}  # type: ignore[attr-defined]
    ms: dict[str, list[float]] = {name: [] for name in engines}
    cer: dict[str, list[float]] = {name: [] for name in engines}
    for round_ in range(rounds):
        order = list(engines.items())[:: -1 if round_ % 2 else 1]
        for image, caption in copies:
            for name, ocr in order:
                start = time.perf_counter()
                text = ocr.read(image)
                ms[name].append((time.perf_counter() - start) * 1000)
                if round_ == 0:
                    cer[name].append(character_error_rate(text, caption))
    return {name: summary(ms[name], cer[name], engines[name].backend.seconds) for name in engines}  # type: ignore[attr-defined]


def summary(ms: list[float], cer: list[float], seconds: dict[str, float]) -> dict:
    return {
        "ms_per_meme": statistics.fmean(ms),
        "detector_ms": 1000 * seconds["ocr_detector"] / len(ms),
        "recognizer_ms": 1000 * seconds["ocr_recognizer"] / len(ms),
        "cer_mean": statistics.fmean(cer),
        "cer_median": statistics.median(cer),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--memes", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    sample = memes("cm-off-meme-sample", args.memes)
    calibration = [m for m, _ in memes("cm-off-meme-sample", 20, skip=args.memes) + memes("memotion1-train-128px", 10)]
    with tempfile.TemporaryDirectory() as scratch:
        results = measure(variants(Path(scratch), calibration), sample, args.rounds)
    base = results["fp32"]
    print(
        f"{'variant':<30}{'ms/meme':>9}{'x':>6}{'det ms':>8}{'x':>6}{'rec ms':>8}{'x':>6}{'CER mean':>10}{'median':>8}"
    )
    for name, r in results.items():
        for key in ("ms_per_meme", "detector_ms", "recognizer_ms"):
            r[key.replace("ms_per_meme", "meme").replace("_ms", "") + "_speedup"] = base[key] / r[key]
        print(
            f"{name:<30}{r['ms_per_meme']:9.1f}{r['meme_speedup']:6.2f}{r['detector_ms']:8.1f}{r['detector_speedup']:6.2f}"
            f"{r['recognizer_ms']:8.1f}{r['recognizer_speedup']:6.2f}{r['cer_mean']:10.3f}{r['cer_median']:8.3f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    meta = {"memes": args.memes, "rounds": args.rounds, "machine": platform.processor() or platform.machine()}
    RESULTS.write_text(json.dumps({"config": meta, "results": results}, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
