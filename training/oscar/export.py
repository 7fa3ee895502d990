"""Export an OSCAR run into a model repository as two stages and a tokenizer:

    <repository>/<kind>_detector/<version>/model.onnx  image [3, H, W] -> region_features,
                                                       region_mask, region_labels (one image)
    <repository>/tokenizer/<kind>.json                 BERT WordPiece for (text, tags) pairs
    <repository>/<kind>/<version>/model.onnx           the five OSCAR inputs -> logits per task

The detector graph is the one training extracted its regions with (checked by hash); the OSCAR
graph is checked against PyTorch on inputs made by the exported stages. The manifest entry names
both stages (``detector``, ``text_tokenizer``), so a server knows to run them before the model
(the gateway's ``service/inference/oscar.py`` does; ``training.oscar.inputs.OscarFeeder`` too).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw

from memotion.labels import ALL_TASKS
from memotion.manifest import ModelEntry, RegionDetectorEntry, WordPieceTokenizerEntry
from memotion.oscar_inputs import OSCAR_INPUTS, PairTokenizer, oscar_feeds
from training.oscar.features import file_sha256
from training.oscar.inputs import OnnxRegionDetector
from training.oscar.kind import DETECTOR_ONNX_FILE, SETTINGS_FILE, TOKENIZER_FILE

if TYPE_CHECKING:
    from training.factory import KindExport


def sample_images() -> list[Image.Image]:
    """Two drawn memes of different shapes: the detector's inputs for the export check."""
    images = []
    for width, height, colour in ((320, 240, "tan"), (200, 300, "skyblue")):
        image = Image.new("RGB", (width, height), colour)
        draw = ImageDraw.Draw(image)
        draw.ellipse((width // 8, height // 6, width // 2, height // 2), fill="darkred")
        draw.rectangle((width // 2, height // 2, width - 10, height - 20), fill="navy")
        draw.text((10, 10), "WHEN THE CODE COMPILES", fill="white")
        images.append(image)
    return images


def _copy_artefacts(job: KindExport, kind_dir: Path, settings: dict) -> tuple[str, str]:
    """The detector's ONNX file (checked: the one training used) and the tokenizer into the
    repository; returns their repository paths."""
    from training.export import ExportError

    detector_file = f"{job.kind}_detector/{job.version}/model.onnx"
    target = job.repository / detector_file
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(kind_dir / DETECTOR_ONNX_FILE, target)
    if file_sha256(target) != settings["detector_sha256"]:
        raise ExportError(f"{kind_dir / DETECTOR_ONNX_FILE} is not the detector {job.kind} was trained with")
    tokenizer_file = f"tokenizer/{job.kind}.json"
    (job.repository / tokenizer_file).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(kind_dir / TOKENIZER_FILE, job.repository / tokenizer_file)
    return detector_file, tokenizer_file


def _sample_feeds(job: KindExport, settings: dict, detector_file: str, tokenizer_file: str) -> dict:
    """OSCAR's inputs for the sample texts and images, through the exported detector and tokenizer."""
    from training.export import SAMPLE_TEXTS

    detector = OnnxRegionDetector(
        job.repository / detector_file,
        min_size=settings["min_size"],
        max_size=settings["max_size"],
        size_divisor=settings["size_divisor"],
    )
    regions = [detector.detect(image) for image in sample_images()]
    texts = list(SAMPLE_TEXTS)
    feeds = oscar_feeds(
        texts,
        [regions[i % len(regions)] for i in range(len(texts))],
        PairTokenizer(job.repository / tokenizer_file, settings["max_length"]),
        tuple(settings["detector"]["categories"]),
    )
    return {name: feeds[name] for name in OSCAR_INPUTS}


def _model_entry(
    job: KindExport, settings: dict, model_file: str, detector_file: str, tokenizer_file: str
) -> ModelEntry:
    detector_options = settings["detector"]
    return ModelEntry(
        name=job.kind,
        kind="oscar",
        version=job.version,
        file=model_file,
        inputs=OSCAR_INPUTS,
        outputs=tuple(t.name for t in ALL_TASKS),
        validation=job.validation,
        backbone={
            "bert": settings["bert"],
            "detector": detector_options["arch"],
            "detector_weights": detector_options["weights"],
        },
        text_tokenizer=WordPieceTokenizerEntry(file=tokenizer_file, max_length=settings["max_length"]),
        detector=RegionDetectorEntry(
            file=detector_file,
            arch=detector_options["arch"],
            min_size=settings["min_size"],
            max_size=settings["max_size"],
            size_divisor=settings["size_divisor"],
            regions=detector_options["regions"],
            feature_dim=settings["feature_dim"],
            categories=tuple(detector_options["categories"]),
        ),
    )


def export_oscar_model(job: KindExport, kind_dir: Path) -> ModelEntry:
    """OSCAR, its detector and its tokenizer into the repository; the model checked against PyTorch."""
    from training.export import export_checked

    settings = json.loads((kind_dir / SETTINGS_FILE).read_text())
    detector_file, tokenizer_file = _copy_artefacts(job, kind_dir, settings)
    inputs = _sample_feeds(job, settings, detector_file, tokenizer_file)
    model_file = f"{job.kind}/{job.version}/model.onnx"
    error = export_checked(job.model, inputs, job.repository / model_file, job.kind)
    job.log(
        f"exported {job.kind} -> {model_file} + {detector_file} + {tokenizer_file} "
        f"(ONNX Runtime vs PyTorch max |diff| {error:.1e})"
    )
    return _model_entry(job, settings, model_file, detector_file, tokenizer_file)
