"""OCR networks into the model repository: PP-OCR's text detector and recogniser (ONNX).

The graphs are the ones the PyPI package ``rapidocr`` ships (PaddleOCR's PP-OCRv6 small detector
and multilingual recogniser, already ONNX); export copies them verbatim (sha256 in the manifest;
with ``--quantize int8`` the detector is then replaced by its static INT8 graph, training/ocr_quantize.py),
writes the recogniser's alphabet (stored in the graph's metadata) as a text file, checks the
graphs' tensors, and writes their Triton configs like the classifiers'. On real memes they beat
EasyOCR's CRAFT + English recogniser on both speed and character error rate (bench/ocr.py), so
no PyTorch OCR network is exported.

    <repository>/ocr_detector/1/model.onnx     x [B, 3, H, W] float32   -> [B, 1, H, W] text probability
    <repository>/ocr_recognizer/1/model.onnx   x [B, 3, 48, W] float32  -> [B, W/8, classes] CTC probabilities
    <repository>/ocr/characters.txt            the recogniser's alphabet, one per line
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image

from memotion.manifest import Manifest, OcrEntry, OcrModelEntry, load_manifest, write_manifest
from memotion.triton_repository import TritonBatching, write_triton_files
from training.ocr_quantize import METHOD, detector_feeds, quantize_detector_int8

DETECTOR_GRAPH = "PP-OCRv6_det_small.onnx"
RECOGNIZER_GRAPH = "PP-OCRv6_rec_small.onnx"
CHARACTERS_FILE = "ocr/characters.txt"
DETECTOR_NAME = "ocr_detector"
RECOGNIZER_NAME = "ocr_recognizer"


class OcrExportError(RuntimeError):
    pass


def rapidocr_models_dir() -> Path:
    """The folder of ONNX graphs inside the installed ``rapidocr`` wheel."""
    try:
        import rapidocr
    except ImportError as err:
        raise OcrExportError("exporting OCR needs the rapidocr package (pip install 'memotion[serve]')") from err
    return Path(rapidocr.__file__).parent / "models"


def _graph_signature(path: Path) -> tuple[list[str], list[str], dict[str, str]]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    return [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()], metadata


def _copy_graph(source: Path, repository: Path, name: str, kind: str, version: int) -> tuple[OcrModelEntry, dict]:
    if not source.is_file():
        raise OcrExportError(f"{source} is missing: is the pinned rapidocr version installed?")
    relative = f"{name}/{version}/model.onnx"
    target = repository / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    inputs, outputs, metadata = _graph_signature(target)
    if len(inputs) != 1 or len(outputs) != 1:
        raise OcrExportError(f"{source}: expected one input and one output, got {inputs} -> {outputs}")
    entry = OcrModelEntry(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        version=version,
        file=relative,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        source=f"rapidocr {_rapidocr_version()}: models/{source.name}",
        sha256=hashlib.sha256(target.read_bytes()).hexdigest(),
    )
    return entry, metadata


def _rapidocr_version() -> str:
    from importlib.metadata import version

    return version("rapidocr")


def export_ocr(
    repository: Path,
    version: int = 1,
    batching: TritonBatching = TritonBatching(),
    log: Callable[[str], None] = lambda _: None,
    int8_calibration: Sequence[Image.Image] = (),
) -> OcrEntry:
    """Copy the OCR graphs into ``repository``, write the alphabet and their Triton files; the manifest
    entry. ``int8_calibration``: real memes; when given, the detector is served as static INT8
    calibrated on them (training/ocr_quantize.py; its ``source`` says so)."""
    repository = Path(repository)
    models = rapidocr_models_dir()
    detector, _ = _copy_graph(models / DETECTOR_GRAPH, repository, DETECTOR_NAME, "ocr_detector", version)
    if int8_calibration:
        detector = _quantized_detector(detector, repository, int8_calibration, log)
    recognizer, metadata = _copy_graph(
        models / RECOGNIZER_GRAPH, repository, RECOGNIZER_NAME, "ocr_recognizer", version
    )
    characters = metadata.get("character", "")
    if not characters:
        raise OcrExportError(f"{RECOGNIZER_GRAPH} carries no 'character' metadata (its CTC alphabet)")
    (repository / CHARACTERS_FILE).parent.mkdir(parents=True, exist_ok=True)
    (repository / CHARACTERS_FILE).write_text(characters.rstrip("\n") + "\n", encoding="utf-8")
    entry = OcrEntry(detector=detector, recognizer=recognizer, characters_file=CHARACTERS_FILE)
    write_triton_files(repository, _carrier(entry), batching, models=entry.models())
    log(f"exported OCR: {detector.file} ({detector.source}), {recognizer.file} ({recognizer.source})")
    return entry


def _quantized_detector(
    detector: OcrModelEntry, repository: Path, images: Sequence[Image.Image], log: Callable[[str], None]
) -> OcrModelEntry:
    graph = repository / detector.file
    feeds = detector_feeds(images)
    quantize_detector_int8(graph, detector.inputs[0], feeds)
    method = METHOD.format(n=len(feeds))
    log(f"OCR detector: {method}")
    return detector.model_copy(
        update={"source": f"{detector.source}; {method}", "sha256": hashlib.sha256(graph.read_bytes()).hexdigest()}
    )


def _carrier(entry: OcrEntry) -> Manifest:
    """write_triton_files wants a manifest; with ``models=`` given it reads nothing from it."""
    return Manifest.model_construct(ocr=entry, models=())


def add_ocr_to_repository(
    repository: Path, log: Callable[[str], None] = lambda _: None, int8_calibration: Sequence[Image.Image] = ()
) -> Manifest:
    """Export OCR into an already exported repository and rewrite its manifest (manifest last)."""
    manifest = load_manifest(repository)
    entry = export_ocr(Path(repository), log=log, int8_calibration=int8_calibration)
    updated = manifest.model_copy(update={"ocr": entry})
    write_manifest(Manifest.model_validate(updated.model_dump()), repository)
    return updated
