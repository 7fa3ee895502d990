"""Export a training run to a model repository: ONNX per model, tokenizer, manifest.json.

Layout (Triton's: the same directory is a Triton model repository, see memotion/triton_repository.py):
    <repository>/manifest.json
    <repository>/tokenizer/tokenizer.json
    <repository>/<model>/<version>/model.onnx
    <repository>/<model>/config.pbtxt, configs/gpu.pbtxt, configs/gpu_tensorrt.pbtxt, <version>/model.py
Every exported model is checked against PyTorch with ONNX Runtime; the repository is written in a
folder beside the target and moved into place only when every member passed
(training/staged_repository.py), so a failed export never leaves a half-written repository.
PyTorch's fused attention fast path (``aten::_native_multi_head_attention``, taken in eval mode at
ViT-B size) has no ONNX form: export traces with it switched off (``attention_exportable``).
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import open_clip
import torch
from torch import nn

from memotion.labels import ALL_TASKS, TASK_B_NAMES, TASK_B_OUTPUT
from memotion.manifest import (
    EnsembleEntry,
    Manifest,
    ModelEntry,
    Preprocessing,
    StackerEntry,
    TaskEntry,
    TokenizerEntry,
    TokenTrimmingEntry,
    write_manifest,
)
from memotion.tokenizer import ClipTokenizer, trim_token_ids
from memotion.triton_repository import write_triton_files
from memotion.voters import served_voters
from training.backbone import register_model_configs
from training.factory import KindExport, load_checkpoint, model_inputs, model_kind
from training.ocr_export import export_ocr
from training.ocr_quantize import calibration_memes
from training.quantize import (
    CALIBRATION_MEMES,
    QUANTIZE_CHOICES,
    Int8Feeds,
    captions,
    quantize_entry,
    quantize_member,
    real_meme_feeds,
)
from training.recipe import read_summary
from training.staged_repository import staged_repository
from training.tokenizer_export import write_clip_tokenizer

OPSET = 17
PARITY_TOLERANCE = 1e-4
TOKENIZER_FILE = "tokenizer/tokenizer.json"
SAMPLE_TEXTS = ("when the code finally compiles", "bhai ekdum mast hai yaar", "")


class ExportError(RuntimeError):
    pass


def sample_inputs(tokenizer: ClipTokenizer, preprocessing: Preprocessing, batch: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    size = preprocessing.image_size
    texts = [SAMPLE_TEXTS[i % len(SAMPLE_TEXTS)] for i in range(batch)]
    return {
        "input_ids": tokenizer(texts),
        "pixel_values": rng.standard_normal((batch, 3, size, size)).astype(np.float32),
        "text": captions(texts),
    }


def output_names(model: nn.Module) -> list[str]:
    """The task names, then TASK_B_OUTPUT for a model with a direct Task B head."""
    return [t.name for t in ALL_TASKS] + ([TASK_B_OUTPUT] if getattr(model, "task_b_direct", False) else [])


@contextmanager
def attention_exportable() -> Iterator[None]:
    """PyTorch's MHA fast path off for the block (restored after): ``nn.MultiheadAttention`` then
    runs the plain ops the ONNX exporter knows, whatever the model's size."""
    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)


def export_onnx(model: nn.Module, inputs: dict[str, np.ndarray], path: Path) -> Path:
    """Export with a dynamic batch axis; input and output names come from the manifest contract."""
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(inputs)
    outputs = output_names(model)
    args = tuple(torch.from_numpy(inputs[name]) for name in names)
    # The tracer's warnings (legacy exporter, LSTM batch size, index ops) are about cases the
    # parity check right after export covers, at two batch sizes in the tests.
    with torch.no_grad(), attention_exportable(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            args,
            str(path),
            input_names=names,
            output_names=outputs,
            opset_version=OPSET,
            dynamic_axes=dynamic_axes(model, names + outputs),
            dynamo=False,
        )
    onnx.checker.check_model(str(path))
    return path


def dynamic_axes(model: nn.Module, names: list[str]) -> dict[str, dict[int, str]]:
    """A dynamic batch axis on every tensor; a dynamic token axis on ``input_ids`` of a model whose
    logits do not depend on padding after the longest text (``token_trimmable``)."""
    axes = {name: {0: "batch"} for name in names}
    if getattr(model, "token_trimmable", False) and "input_ids" in axes:
        axes["input_ids"] = {0: "batch", 1: "tokens"}
    return axes


def export_checked(model: nn.Module, inputs: dict[str, np.ndarray], path: Path, kind: str) -> float:
    """Export ``model`` to ``path`` and check it against PyTorch on ``inputs``; the max |diff|
    (ExportError past PARITY_TOLERANCE)."""
    export_onnx(model, inputs, path)
    error = parity_error(model, path, inputs)
    if error > PARITY_TOLERANCE:
        raise ExportError(f"{kind}: ONNX Runtime differs from PyTorch by {error:.2e}")
    return error


def parity_error(model: nn.Module, path: Path, inputs: dict[str, np.ndarray]) -> float:
    """Largest absolute difference between PyTorch and ONNX Runtime logits on ``inputs``."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return _max_diff(session.run(output_names(model), inputs), _torch_logits(model, inputs))


def _torch_logits(model: nn.Module, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        return [t.numpy() for t in model(*(torch.from_numpy(inputs[name]) for name in inputs))]


def _max_diff(got: list[np.ndarray], expected: list[np.ndarray]) -> float:
    if len(got) != len(expected):
        raise ExportError(f"ONNX graph has {len(got)} outputs, the model {len(expected)}")
    return max(float(np.abs(g - e).max()) for g, e in zip(got, expected))


def token_trimming(model: nn.Module, path: Path, inputs: dict[str, np.ndarray], kind: str) -> TokenTrimmingEntry | None:
    """For a ``token_trimmable`` model: ONNX Runtime on ``input_ids`` cut to the longest text and to
    halfway to the context length, against PyTorch on the full-length ids (ExportError past
    PARITY_TOLERANCE); None for a model with a fixed token axis."""
    if not getattr(model, "token_trimmable", False) or "input_ids" not in inputs:
        return None
    ids = inputs["input_ids"]
    shortest = trim_token_ids(ids).shape[1]
    lengths = sorted({shortest, (shortest + ids.shape[1] + 1) // 2})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = _torch_logits(model, inputs)
    error = 0.0
    for length in lengths:
        feed = {**inputs, "input_ids": np.ascontiguousarray(ids[:, :length])}
        error = max(error, _max_diff(session.run(output_names(model), feed), expected))
    if error > PARITY_TOLERANCE:
        raise ExportError(f"{kind}: ONNX Runtime on ids cut to {lengths} tokens differs from PyTorch by {error:.2e}")
    return TokenTrimmingEntry(checked_lengths=tuple(lengths), max_abs_logit_diff=error)


def export_tokenizer(summary: dict, repository: Path) -> ClipTokenizer:
    """Write the run's CLIP tokenizer as ``tokenizer.json`` and check it agrees with open_clip's."""
    simple = open_clip.get_tokenizer(summary["clip"], context_length=summary["context_length"])
    tokenizer_path = write_clip_tokenizer(simple, repository / TOKENIZER_FILE)
    tokenizer = ClipTokenizer(tokenizer_path, summary["context_length"])
    expected_ids = simple(list(SAMPLE_TEXTS)).numpy()
    if not np.array_equal(tokenizer(list(SAMPLE_TEXTS)), expected_ids):
        raise ExportError("exported tokenizer.json disagrees with open_clip's tokenizer")
    return tokenizer


def export_model(
    model: nn.Module,
    kind: str,
    info: dict,
    summary: dict,
    samples: dict[str, np.ndarray],
    repository: Path,
    version: int,
    log: Callable[[str], None],
    int8_feeds: Int8Feeds | None = None,
) -> ModelEntry:
    """One model to ``<kind>/<version>/model.onnx``, checked against PyTorch; its manifest entry.

    ``int8_feeds``: quantise the checked FP32 graph to INT8 (static with its calibration memes) and
    measure the two against each other on its feeds (training/quantize.py)."""
    relative = f"{kind}/{version}/model.onnx"
    inputs = {name: samples[name] for name in model_inputs(kind)}
    error = export_checked(model, inputs, repository / relative, kind)
    log(f"exported {kind} -> {relative} (ONNX Runtime vs PyTorch max |diff| {error:.1e})")
    trimming = token_trimming(model, repository / relative, inputs, kind)
    if trimming is not None:
        lengths, diff = trimming.checked_lengths, trimming.max_abs_logit_diff
        log(f"  dynamic token axis: ids cut to {lengths} tokens vs full, max |diff| {diff:.1e}")
    quantization = None
    if int8_feeds is not None:
        names = model_inputs(kind)
        calibration = int8_feeds.calibration
        feeds = Int8Feeds(
            {n: int8_feeds.feeds[n] for n in names},
            int8_feeds.source,
            {n: calibration[n] for n in names} if calibration is not None else None,
        )
        quantization = quantize_member(repository / relative, feeds, output_names(model), log, trimming is not None)
    return ModelEntry(
        name=kind,
        kind=kind,
        version=version,
        file=relative,
        inputs=model_inputs(kind),
        outputs=tuple(t.name for t in ALL_TASKS),
        validation=info["validation"],
        backbone={"clip": summary["clip"], "pretrained": summary["pretrained"]},
        task_b_output=TASK_B_OUTPUT if getattr(model, "task_b_direct", False) else None,
        quantization=quantization,
        token_trimming=trimming,
    )


def build_manifest(summary: dict, preprocessing: Preprocessing, entries: list[ModelEntry], version: int) -> Manifest:
    """The repository's manifest: tasks, preprocessing, tokenizer, models, ensemble, training."""
    created = dt.datetime.now(dt.timezone.utc)
    return Manifest(
        repository_version=f"{created:%Y%m%d-%H%M%S}-v{version}",
        created_at=created.isoformat(timespec="seconds"),
        tasks=tuple(TaskEntry(name=t.name, labels=t.labels, codes=t.codes) for t in ALL_TASKS),
        task_b_names=dict(TASK_B_NAMES),
        preprocessing=preprocessing,
        tokenizer=TokenizerEntry(file=TOKENIZER_FILE, context_length=summary["context_length"]),
        models=tuple(entries),
        ensemble=ensemble_entry(summary["ensemble"]),
        training={
            "data": summary["data"],
            "ensemble_validation": summary["ensemble"]["validation"],
            "recipe": summary["recipe"],
        },
        notice=notice_for(summary),
    )


def export_run(
    run_dir: Path,
    repository: Path,
    version: int = 1,
    log: Callable[[str], None] = lambda _: None,
    quantize: str = "none",
) -> Path:
    """Export every model of a ``memotion train`` run into ``repository``; returns its path.

    Written beside ``repository`` and moved into place only when complete (a failure leaves an
    existing repository as it was). ``quantize``: "none" (FP32), "int8" (training/quantize.py) or
    "int8-static" (training/quantize_static.py: for MEMOTION_ENGINE=openvino)."""
    if quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"quantize must be one of {QUANTIZE_CHOICES}, got {quantize!r}")
    register_model_configs()
    summary = read_summary(run_dir)
    with staged_repository(Path(repository)) as staged:
        manifest = write_repository(run_dir, summary, staged, version, log, quantize)
    for line in served_voters(manifest.ensemble, [t.name for t in manifest.tasks]):
        log(line)
    return Path(repository)


def write_repository(
    run_dir: Path, summary: dict, repository: Path, version: int, log: Callable[[str], None], quantize: str = "none"
) -> Manifest:
    """Every model, the tokenizer, Triton configs, OCR and (last) the manifest into ``repository``."""
    tokenizer = export_tokenizer(summary, repository)
    preprocessing = Preprocessing.model_validate(summary["preprocessing"])
    samples = sample_inputs(tokenizer, preprocessing)
    int8_feeds = agreement_feeds(summary, tokenizer, preprocessing, samples, quantize) if quantize != "none" else None
    entries = []
    for kind, info in summary["models"].items():
        spec = model_kind(kind)
        model = load_checkpoint(run_dir / info["checkpoint"])[0] if info.get("checkpoint") else None
        if spec.export is not None:  # a kind with stages of its own (OSCAR: detector, tokenizer)
            entry = spec.export(KindExport(model, kind, run_dir, repository, version, info["validation"], log))
            entries.append(quantize_entry(entry, repository, int8_feeds, log) if int8_feeds else entry)
        else:
            entries.append(export_model(model, kind, info, summary, samples, repository, version, log, int8_feeds))
        del model  # one member's weights in memory at a time (ViT-B: hundreds of MB each)
    manifest = build_manifest(summary, preprocessing, entries, version)
    write_triton_files(repository, manifest)  # config.pbtxt (CPU), configs/gpu*.pbtxt, model.py
    log(
        "wrote Triton configs: <model>/config.pbtxt (python backend, CPU), <model>/configs/gpu.pbtxt "
        "(onnxruntime_onnx) and gpu_tensorrt.pbtxt"
    )
    # OCR networks (PP-OCR detector + recogniser, their Triton configs): training/ocr_export.py.
    # With --quantize int8 the detector is static INT8, calibrated on the run's validation memes;
    # int8-static keeps it FP32: OpenVINO, which serves that repository, crashes compiling the INT8
    # one (openvino_backend.py) and runs the FP32 one itself.
    ocr_memes = calibration_memes(summary) if quantize == "int8" else []
    if quantize == "int8" and not ocr_memes:
        log("OCR detector stays FP32: the run's validation memes (its INT8 calibration set) are not here")
    manifest = manifest.model_copy(update={"ocr": export_ocr(repository, log=log, int8_calibration=ocr_memes)})
    write_manifest(manifest, repository)
    return manifest


def agreement_feeds(
    summary: dict,
    tokenizer: ClipTokenizer,
    preprocessing: Preprocessing,
    samples: dict[str, np.ndarray],
    quantize: str = "int8",
) -> Int8Feeds:
    """What INT8 members are compared with FP32 on: the run's validation memes, else the samples;
    for ``int8-static`` the run's training memes to calibrate on (ValueError when they are not here)."""
    feeds = real_meme_feeds(summary, tokenizer, preprocessing)
    agreement = Int8Feeds(feeds, "validation memes") if feeds is not None else Int8Feeds(samples, "sample inputs")
    if quantize != "int8-static":
        return agreement
    calibration = real_meme_feeds(summary, tokenizer, preprocessing, CALIBRATION_MEMES, split="train")
    if calibration is None:
        raise ValueError(
            f"--quantize int8-static calibrates on the run's training memes ({summary['data']['dir']}/train.csv), "
            "which are not on this machine: export where the run's data is, or use --quantize int8"
        )
    return Int8Feeds(agreement.feeds, agreement.source, calibration)


def ensemble_entry(ensemble: dict) -> EnsembleEntry:
    """The manifest's ensemble from summary.json's (per-head voters from the ensemble search)."""
    return EnsembleEntry(
        members=tuple(ensemble["members"]),
        task_b=ensemble.get("task_b", "from_task_c"),
        task_members={task: tuple(m) for task, m in ensemble.get("task_members", {}).items()},
        task_b_members={head: tuple(m) for head, m in ensemble.get("task_b_members", {}).items()},
        selection=ensemble.get("search", "all"),
        warnings=tuple(ensemble.get("warnings", ())),
        task_rules=dict(ensemble.get("task_rules", {})),
        task_weights={task: dict(w) for task, w in ensemble.get("task_weights", {}).items()},
        objective=ensemble.get("objective", "weighted_f1"),
        task_offsets={task: tuple(b) for task, b in ensemble.get("task_offsets", {}).items()},
        task_stackers={task: StackerEntry(**st) for task, st in ensemble.get("task_stackers", {}).items()},
    )


def notice_for(summary: dict) -> str:
    """What a user must know about these models before trusting them."""
    if summary["pretrained"] is None:
        return (
            f"DEMO MODELS: tiny {summary['clip']} CLIP towers with random (not pretrained) "
            f"weights, trained on {summary['data']['train']} memes from {summary['data']['dir']}. "
            "Their answers show the plumbing works; they are not fit for moderation."
        )
    return ""
