"""INT8 members for CPU serving: ONNX Runtime's dynamic quantisation, checked against FP32.

``memotion export --quantize int8`` exports each member in FP32 (checked against PyTorch as
always), quantises its MatMul/Gemm and LSTM weights (ONNX Runtime's DynamicQuantizeLSTM: CLIP-text's
BiLSTM, sequential, the slowest part of that member once the rest is INT8) to signed INT8 per
output channel -- activations are quantised per call to UINT8, so no calibration set is needed; on
x86 with AVX-512 VNNI / AMX the u8 x s8 products run on the integer units -- and measures how far
the INT8 graph is from the FP32 one on real memes (the run's validation memes when they are on
this machine, else sample inputs): label agreement per head and the largest logit difference,
written into the manifest (``ModelEntry.quantization``). The served file is the INT8 graph
(``<model>/<version>/model.onnx``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from memotion.data_format import load_split
from memotion.manifest import (
    RAW_TEXT_INPUT,
    TEXT_TOKENIZER_INPUT,
    ModelEntry,
    Preprocessing,
    QuantizationEntry,
    TextTokenizerEntry,
)
from memotion.preprocess import images_to_batch
from memotion.tokenizer import ClipTokenizer, WordPieceTokenizer
from training.quantize_static import (
    FLOAT_METHOD,
    SERVED_ENGINE,
    SERVED_HINT,
    batches,
    openvino_outputs,
    quantize_int8_static,
    recurrence,
)
from training.quantize_static import METHOD as STATIC_METHOD

QUANTIZE_CHOICES = ("none", "int8", "int8-static")  # int8-static: training/quantize_static.py
AGREEMENT_MEMES = 64  # validation memes the INT8 graph is compared with FP32 on
CALIBRATION_MEMES = 64  # training memes a static INT8 graph's activation ranges come from
CHUNK = 16  # memes per ONNX Runtime call while comparing (bounds memory at ViT-B size)
METHOD = "onnxruntime dynamic: MatMul/Gemm/LSTM weights int8 per channel, activations uint8 per call"
# Tried at ViT-B-32 on real memes (issue 21, bench/member_speed.py) and not taken: ONNX Runtime's
# transformer optimizer first (no Attention fusion on these graphs; slower, lower agreement),
# static QDQ calibrated on real memes and per-tensor weights (both slower, no better agreement),
# the heads kept FP32 (same agreement). LSTM: 1.4x on CLIP-text at batch 8, same agreement.
OP_TYPES = ["MatMul", "Gemm", "LSTM"]
# Members whose inputs are all of these are quantised; the others (tfidf_lr: one linear layer over
# sparse TF-IDF features from a string input, nothing to gain; OSCAR: detector stages) stay FP32.
QUANTIZED_INPUTS = ("input_ids", "pixel_values", TEXT_TOKENIZER_INPUT)


def quantize_int8(fp32: Path, out: Path) -> Path:
    """The dynamically quantised INT8 copy of the ONNX graph ``fp32`` at ``out``."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        fp32,
        out,
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=OP_TYPES,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return out


@dataclass(frozen=True)
class Int8Method:
    """How an INT8 graph was made (the manifest's ``method``) and what it is served with (the
    engine and OpenVINO precision hint its agreement with FP32 is measured on)."""

    method: str
    engine: str = "onnxruntime"
    precision_hint: str | None = None
    precision: Literal["int8", "bf16"] = "int8"  # bf16: the FP32 graph, served by OpenVINO in BF16


DYNAMIC = Int8Method(METHOD)


@dataclass(frozen=True)
class Int8Feeds:
    """What INT8 members are made and checked with: ``feeds`` (the members' inputs) the FP32 graph
    is compared on, ``source`` says what they are; ``calibration``: real memes' inputs for static
    INT8 (``--quantize int8-static``), None for ONNX Runtime's dynamic INT8."""

    feeds: dict[str, np.ndarray]
    source: str
    calibration: dict[str, np.ndarray] | None = None


def real_meme_feeds(
    summary: dict,
    tokenizer: ClipTokenizer,
    preprocessing: Preprocessing,
    limit: int = AGREEMENT_MEMES,
    split: str = "val",
) -> dict[str, np.ndarray] | None:
    """input_ids and pixel_values of up to ``limit`` of the run's validation memes (``split``
    "train": its training memes; None if absent)."""
    records = validation_records(summary, limit, split)
    return records_feeds(records, tokenizer, preprocessing) if records else None


def validation_records(summary: dict, limit: int, split: str = "val") -> list:
    """Up to ``limit`` of the run's validation memes (``split`` "train": its training memes) as
    Memotion records; empty when they are not on this machine (an export elsewhere than the training)."""
    path = Path(summary["data"]["dir"]) / f"{split}.csv"
    return load_split(path)[:limit] if path.is_file() else []


def record_images(records: list) -> list:
    """The records' images, RGB (PIL), each file closed once read."""
    from PIL import Image

    images = []
    for record in records:
        with Image.open(record.image_path) as image:
            images.append(image.convert("RGB"))
    return images


def records_feeds(records: list, tokenizer: ClipTokenizer, preprocessing: Preprocessing) -> dict[str, np.ndarray]:
    """The members' inputs (input_ids, pixel_values) for Memotion records (their caption and image),
    and the captions themselves (``text``, string [N, 1]: tfidf_lr's input, what text members tokenize)."""
    return {
        "input_ids": tokenizer([r.text for r in records]),
        "pixel_values": images_to_batch(record_images(records), preprocessing),
        RAW_TEXT_INPUT: captions([r.text for r in records]),
    }


def captions(texts: Sequence[str]) -> np.ndarray:
    """Texts as the string [N, 1] array a ``text`` input takes."""
    return np.array(list(texts), dtype=object).reshape(-1, 1)


def member_feeds(entry: ModelEntry, repository: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """``entry``'s inputs from ``feeds`` (bert_input_ids by its own tokenizer from ``feeds["text"]``);
    None for a member that stays FP32 (an input outside ``QUANTIZED_INPUTS``)."""
    if set(entry.inputs) - set(QUANTIZED_INPUTS):
        return None
    inputs = dict(feeds)
    if isinstance(entry.text_tokenizer, TextTokenizerEntry):
        tokenizer = WordPieceTokenizer(repository / entry.text_tokenizer.file, entry.text_tokenizer.max_length)
        inputs[TEXT_TOKENIZER_INPUT] = tokenizer([str(t) for t in feeds[RAW_TEXT_INPUT][:, 0]])
    return {name: inputs[name] for name in entry.inputs}


def quantize_entry(entry: ModelEntry, repository: Path, feeds: Int8Feeds, log: Callable[[str], None]) -> ModelEntry:
    """A member exported by its kind's own ``export`` (bert_text, tfidf_lr, OSCAR) quantised like
    the CLIP members where its inputs allow (``member_feeds``); else kept FP32, said in the log."""
    inputs = member_feeds(entry, repository, feeds.feeds)
    if inputs is None:
        log(f"  int8: {entry.name} kept FP32 (inputs {', '.join(entry.inputs)}: only {QUANTIZED_INPUTS} members)")
        return entry
    calibration = member_feeds(entry, repository, feeds.calibration) if feeds.calibration is not None else None
    member = Int8Feeds(inputs, feeds.source, calibration)
    quantization = quantize_member(repository / entry.file, member, entry.served_outputs(), log)
    return entry.model_copy(update={"quantization": quantization})


def _run_chunked(
    path: Path, feeds: dict[str, np.ndarray], outputs: Sequence[str], trim: bool, engine: str = "onnxruntime"
) -> list[np.ndarray]:
    """The outputs on ``feeds`` CHUNK memes a call on ``engine`` (onnxruntime, or openvino as it
    serves a static INT8 graph); ``trim``: ids cut to each chunk's longest text, as the gateway runs
    a member with a dynamic token axis (INT8 activation scales see only those)."""
    import onnxruntime as ort

    chunks = batches(feeds, CHUNK, trim)
    if engine == SERVED_ENGINE:
        return openvino_outputs(path, chunks, outputs)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    parts = [session.run(list(outputs), chunk) for chunk in chunks]
    return [np.concatenate([p[i] for p in parts]) for i in range(len(outputs))]


def int8_agreement(
    fp32: Path,
    int8: Path,
    feeds: dict[str, np.ndarray],
    outputs: Sequence[str],
    source: str,
    trim: bool = False,
    how: Int8Method = DYNAMIC,
) -> QuantizationEntry:
    """Per-head label agreement and max |logit difference| of ``int8`` (``trim``: on ids cut to the
    longest text, as served) against ``fp32`` (full length, ONNX Runtime) on ``feeds``; ``int8``
    run as served (``how.engine``)."""
    reference = _run_chunked(fp32, feeds, outputs, trim=False)
    quantised = _run_chunked(int8, feeds, outputs, trim, how.engine)
    agreement = {
        name: float(np.mean(r.argmax(-1) == q.argmax(-1))) for name, r, q in zip(outputs, reference, quantised)
    }
    return QuantizationEntry(
        precision=how.precision,
        method=how.method,
        inputs=source,
        memes=int(len(reference[0])),
        label_agreement=agreement,
        max_abs_logit_diff=max(float(np.abs(r - q).max()) for r, q in zip(reference, quantised)),
        engine=how.engine,
        precision_hint=how.precision_hint,
    )


def quantize_member(
    path: Path, feeds: Int8Feeds, outputs: Sequence[str], log: Callable[[str], None], trim: bool = False
) -> QuantizationEntry:
    """Replace the FP32 graph at ``path`` by its INT8 copy (static when ``feeds.calibration``
    is set; a recurrence there stays FP32 for OpenVINO's BF16, ``write_served_graph``); how the
    two agree on ``feeds.feeds`` (``trim``: the served graph on ids cut to the longest text, as
    the gateway serves it)."""
    fp32 = path.with_name(path.stem + ".fp32.onnx")
    path.rename(fp32)
    try:
        how = write_served_graph(fp32, path, feeds, trim, log)
        entry = int8_agreement(fp32, path, feeds.feeds, outputs, feeds.source, trim, how)
    finally:
        fp32.unlink(missing_ok=True)
    worst = min(entry.label_agreement.values())
    served = f" (as served: {entry.engine}, {entry.precision_hint})" if entry.precision_hint else ""
    log(
        f"  {entry.precision}: {path.stat().st_size / 1e6:.0f} MB, label agreement with FP32 >= {worst:.1%}{served} "
        f"on {entry.memes} {feeds.source}, max |logit diff| {entry.max_abs_logit_diff:.2e}"
    )
    return entry


def write_served_graph(fp32: Path, out: Path, feeds: Int8Feeds, trim: bool, log: Callable[[str], None]) -> Int8Method:
    """The served graph of the FP32 one at ``fp32`` written to ``out``: ONNX Runtime's dynamic INT8,
    or with ``feeds.calibration`` static INT8 for OpenVINO; there a member with a recurrence stays
    FP32, run by OpenVINO in BF16 (its static INT8 agreed too little), unless OpenVINO runs its
    recurrence wrongly (a packed BiLSTM: dynamic INT8 on ONNX Runtime)."""
    if feeds.calibration is None:
        quantize_int8(fp32, out)
        return DYNAMIC
    member, recurrent = out.parent.parent.name, recurrence(fp32)
    if recurrent == "per-row":
        log(f"  int8-static: {member} gets dynamic INT8 for ONNX Runtime (OpenVINO: its packed LSTM wrong)")
        quantize_int8(fp32, out)
        return DYNAMIC
    if recurrent == "full-length":
        log(f"  int8-static: {member} stays FP32, served by OpenVINO in BF16 (its recurrence: static INT8 agreed "
            "92 to 95% with FP32 at ViT-B-32)")  # fmt: skip
        shutil.copyfile(fp32, out)
        return Int8Method(FLOAT_METHOD, SERVED_ENGINE, SERVED_HINT, precision="bf16")
    quantize_int8_static(fp32, out, feeds.calibration, trim)
    memes = len(next(iter(feeds.calibration.values())))
    return Int8Method(STATIC_METHOD.format(memes=memes), SERVED_ENGINE, SERVED_HINT)
