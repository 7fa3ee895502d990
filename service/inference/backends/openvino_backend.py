"""OpenVINO backend: one compiled model per manifest model, in process (``MEMOTION_ENGINE=openvino``).

Reads the same ``model.onnx`` files as the ONNX Runtime backend (batch and token axes stay
dynamic); a model OpenVINO would not answer exactly or cannot load (``openvino_mismatch``,
``recurrence_mismatch``: string inputs, the INT8 OCR detector, the packed BiLSTM of clip_text
repositories exported before its full-length rows) runs on ONNX Runtime inside it. On a CPU with
AMX, OpenVINO runs the static INT8 graphs of ``memotion export --quantize int8-static``
(QuantizeLinear/DequantizeLinear around the matmuls) as u8 x s8 matmuls on the tile unit and, with
the ``bf16`` precision hint, every other float op in BF16. Without a hint from the manifest the
precision is ``f32``: the FP32 export's numbers (OpenVINO's own default on an AMX CPU would be BF16).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import queue
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from memotion.manifest import RAW_TEXT_INPUT, OcrModelEntry, ServedModel
from service.inference.backends.base import TOKEN_MULTIPLE, BackendError, model_feed, trimmed_feed
from service.inference.backends.ort_backend import OnnxRuntimeBackend

logger = logging.getLogger("memotion.gateway")
PRECISION_HINTS = ("f32", "bf16")
RECURRENCES = {"LSTMSequence": 3, "GRUSequence": 2, "RNNSequence": 2}  # op -> its sequence-lengths input
SHAPE_OPS = ("ShapeOf",)  # their output reads only the input's shape


def compile_config(threads: int, precision_hint: str, cpu_pinning: bool = False) -> dict[str, Any]:
    """OpenVINO CPU properties: ``threads`` per inference (0: OpenVINO's default, every core), one
    stream (a call runs on all of them; concurrent calls queue), float ops in ``precision_hint``,
    threads pinned to cores only with ``cpu_pinning``: the gateway runs up to five compiled models
    at once (three members, OCR's two networks), each with its own threads; pinned, the OS cannot
    move them off a busy core (measured on 2 cores: 1.2 to 1.3x the memes/s at 8 and 32 clients unpinned)."""
    if precision_hint not in PRECISION_HINTS:
        raise BackendError(f"OpenVINO precision hint must be one of {PRECISION_HINTS}, got {precision_hint!r}")
    if threads < 0:
        raise BackendError(f"OpenVINO threads must be >= 0, got {threads}")
    return {
        "INFERENCE_PRECISION_HINT": precision_hint,
        "INFERENCE_NUM_THREADS": threads,
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
        "ENABLE_CPU_PINNING": cpu_pinning,
    }


def release_freed_memory() -> None:
    """Hand the heap's free pages back to the OS (glibc's ``malloc_trim``; elsewhere nothing):
    OpenVINO's ONNX reader leaves about 0.5 GiB freed but resident after compiling the three ViT-B-32
    members (measured: 2.47 -> 1.95 GiB with bf16)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class _CompiledModel:
    """A compiled model and its infer requests: one per concurrent caller (a request is not thread
    safe), made on demand and reused."""

    def __init__(self, compiled: Any) -> None:
        self._compiled = compiled
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.inputs = {port.get_any_name() for port in compiled.inputs}
        self.outputs = {name for port in compiled.outputs for name in port.get_names()}

    def property(self, key: str) -> Any:
        return self._compiled.get_property(key)

    def run(self, names: Sequence[str], feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            request = self._idle.get_nowait()
        except queue.Empty:
            request = self._compiled.create_infer_request()
        try:
            results = request.infer(dict(feed))
            # copies: the request's output buffers are reused by its next call
            return {name: np.array(results[name]) for name in names}
        finally:
            self._idle.put(request)


def model_precision(model: ServedModel, precision: str, fallback: str = "f32") -> str:
    """The precision hint ``model`` is compiled with: ``precision``, or for "auto" the one its
    agreement was measured with (manifest ``quantization.precision_hint``), else ``fallback``."""
    if precision != "auto":
        return precision
    quantization = getattr(model, "quantization", None)
    hint = quantization.precision_hint if quantization is not None else None
    return hint or fallback


def repository_precision(models: Sequence[ServedModel]) -> str:
    """The "auto" hint of a model the manifest states none for (the FP32 OCR networks): bf16 when
    a member was measured with it (a repository made for OpenVINO BF16: OCR reads the same text in
    BF16, CER 0.170 against 0.173, README "Production size", in 44 against 80 ms), else f32."""
    return "bf16" if any(model_precision(m, "auto") == "bf16" for m in models) else "f32"


def openvino_mismatch(model: ServedModel) -> str | None:
    """Why ``model`` runs on ONNX Runtime under the OpenVINO engine, read from the manifest (None:
    OpenVINO may run it): a raw-text (string) input, which OpenVINO has no tensor for, the static
    INT8 OCR detector of ``--quantize int8`` (OpenVINO 2026.4's compile_model crashes the process
    on it; the FP32 OCR networks run on OpenVINO: the same text as ONNX Runtime on 32 real memes),
    or a member quantised for ONNX Runtime (its dynamic INT8: 0.8 to 1.1x FP32 on OpenVINO)."""
    if RAW_TEXT_INPUT in model.inputs:
        return "it takes raw text (a string tensor)"
    if isinstance(model, OcrModelEntry) and "int8" in model.source:
        return "it is the static INT8 OCR detector"
    quantization = getattr(model, "quantization", None)
    if quantization is not None and quantization.engine != "openvino":
        return f"its INT8 graph is made for {quantization.engine} (OpenVINO runs it no faster than FP32)"
    return None


def depends_on_input_values(node: Any) -> bool:
    """True when ``node``'s value is computed from a graph input's values, not only from constants
    and input shapes (the path through a ShapeOf reads no value)."""
    pending, seen = [node], set()
    while pending:
        current = pending.pop()
        if current.get_name() in seen or current.get_type_name() in SHAPE_OPS:
            continue
        seen.add(current.get_name())
        if current.get_type_name() == "Parameter":
            return True
        pending.extend(port.get_source_output().get_node() for port in current.inputs())
    return False


def recurrence_mismatch(graph: Any) -> str | None:
    """A recurrence over per-row lengths in ``graph``, computed from an input's values (OpenVINO
    2026.4's LSTMSequence runs the shorter rows of a batch wrongly: measured on the packed BiLSTM
    of clip_text repositories exported before its full-length rows, training/models/ragged_bilstm.py),
    else None. Lengths made from the input's shape (an ONNX LSTM without ``sequence_lens``: every
    row runs the whole sequence) are exact."""
    for op in graph.get_ordered_ops():
        if op.get_type_name() in RECURRENCES:
            lengths = op.input(RECURRENCES[op.get_type_name()]).get_source_output().get_node()
            if depends_on_input_values(lengths):
                return f"its {op.get_type_name()} runs over per-row lengths"
    return None


class OpenVinoBackend:
    """OpenVINO for every model it runs exactly; the others (``openvino_mismatch``,
    ``recurrence_mismatch``) on ONNX Runtime."""

    name = "openvino"

    def __init__(
        self,
        repository_root: Path,
        models: Sequence[ServedModel],
        *,
        threads: int = 0,
        precision: str = "auto",
        cpu_pinning: bool = False,
    ) -> None:
        """``threads`` per compiled model (0: every core); ``precision``: auto, f32 or bf16
        (``model_precision``); ``cpu_pinning``: see ``compile_config``."""
        try:
            import openvino as ov
        except ImportError as err:
            raise BackendError("MEMOTION_ENGINE=openvino needs OpenVINO: pip install 'memotion[openvino]'") from err
        if precision not in ("auto", *PRECISION_HINTS):
            raise BackendError(f"OpenVINO precision must be auto or one of {PRECISION_HINTS}, got {precision!r}")
        core = ov.Core()
        self._cpu_pinning = cpu_pinning
        self._fallback_precision = repository_precision(models)
        self._models: dict[str, _CompiledModel] = {}
        self._lock = threading.Lock()
        on_ort = []
        for model in models:
            compiled = self._load(core, Path(repository_root), model, threads, precision)
            if compiled is None:
                on_ort.append(model)
            else:
                self._models[model.name] = compiled
        self._onnxruntime = (
            OnnxRuntimeBackend(repository_root, on_ort, intra_op_threads=threads, allow_spinning=False)
            if on_ort
            else None
        )
        release_freed_memory()

    def _load(self, core: Any, root: Path, model: ServedModel, threads: int, precision: str) -> _CompiledModel | None:
        """``model`` compiled for the CPU; None when ONNX Runtime must run it (``openvino_mismatch``)."""
        path, hint = root / model.file, model_precision(model, precision, self._fallback_precision)
        mismatch = openvino_mismatch(model)
        try:
            graph = None if mismatch else core.read_model(str(path))
            mismatch = mismatch or recurrence_mismatch(graph)
            if mismatch:
                logger.info("model %s served by onnxruntime: %s", model.name, mismatch)
                return None
            compiled = _CompiledModel(
                core.compile_model(graph, "CPU", compile_config(threads, hint, self._cpu_pinning))
            )
        except BackendError:
            raise
        except Exception as err:
            raise BackendError(f"model {model.name}: openvino cannot load {path}: {err}") from err
        self._check_signature(model, compiled, path)
        logger.info("loaded model %s v%d from %s (openvino CPU, %s)", model.name, model.version, path, hint)
        return compiled

    @staticmethod
    def _check_signature(model: ServedModel, compiled: _CompiledModel, path: Path) -> None:
        missing_in = [name for name in model.inputs if name not in compiled.inputs]
        extra_in = sorted(compiled.inputs - set(model.inputs))
        missing_out = [name for name in model.served_outputs() if name not in compiled.outputs]
        if missing_in or extra_in or missing_out:
            raise BackendError(
                f"model {model.name} ({path}) does not match the manifest: graph inputs "
                f"{sorted(compiled.inputs)}, outputs {sorted(compiled.outputs)}; manifest inputs "
                f"{list(model.inputs)}, outputs {list(model.outputs)}"
            )

    def infer(self, model: ServedModel, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.run(model, self.prepare(model, inputs))

    def prepare(self, model: ServedModel, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The feed of ``model``: its inputs, contiguous and of the graph's dtype (BackendError if one is missing)."""
        if model.name not in self._models and not (self._onnxruntime and self._onnxruntime.serves(model)):
            raise BackendError(f"model {model.name} is not loaded")
        return model_feed(model, inputs)

    def run(self, model: ServedModel, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One OpenVINO call on a prepared feed; ``input_ids`` cut to the batch's longest text,
        rounded up to ``TOKEN_MULTIPLE`` tokens (few shapes to prepare), where the manifest allows it."""
        compiled = self._models.get(model.name)
        if compiled is None and self._onnxruntime is not None and self._onnxruntime.serves(model):
            return self._onnxruntime.run(model, feed)
        if compiled is None:
            raise BackendError(f"model {model.name} is not loaded")
        try:
            return compiled.run(model.served_outputs(), trimmed_feed(model, feed, TOKEN_MULTIPLE))
        except RuntimeError as err:
            raise BackendError(f"model {model.name}: openvino: {err}") from err

    def engine_of(self, model: ServedModel) -> str | None:
        """The engine running ``model`` (openvino, onnxruntime), None if it is not loaded."""
        if model.name in self._models:
            return "openvino"
        return "onnxruntime" if self._onnxruntime is not None and self._onnxruntime.serves(model) else None

    def compiled_property(self, model: ServedModel, key: str) -> Any:
        """OpenVINO's property ``key`` of ``model`` as compiled (BackendError if OpenVINO does not run it)."""
        compiled = self._models.get(model.name)
        if compiled is None:
            raise BackendError(f"model {model.name} is not compiled by openvino")
        return compiled.property(key)

    def ready(self) -> bool:
        return bool(self._models) or self._onnxruntime is not None

    def close(self) -> None:
        with self._lock:
            self._models.clear()
            if self._onnxruntime is not None:
                self._onnxruntime.close()
                self._onnxruntime = None
