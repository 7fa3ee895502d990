"""Static INT8 members for OpenVINO (``memotion export --quantize int8-static``).

ONNX Runtime's ``quantize_static`` writes QuantizeLinear/DequantizeLinear pairs around every MatMul
and Gemm by a weight (weights signed INT8 per output channel, activations signed INT8 per tensor
and symmetric, zero point 0, their ranges the largest magnitude seen on the run's training memes,
8 a call as the gateway batches them); attention's two activation-by-activation matmuls stay
float. OpenVINO's CPU plugin turns each pair into an INT8 matmul on AMX / VNNI and, with its
``bf16`` precision hint, runs the rest (LayerNorm, softmax, GELU) in BF16. Symmetric activations
matter: with unsigned ones (a zero point) OpenVINO 2026.4 left a Convert (reference kernel) and a
Subtract beside about half the matmuls (ViT-B-32, batch 8, one run of bench/openvino_members.py:
CLIP-image 6.0 -> 5.0, CLIP-multi 11.8 -> 9.8 ms per meme, the same agreement).
The same graph on ONNX Runtime runs, slower than its dynamic INT8: serve it with
``MEMOTION_ENGINE=openvino``. How far it is from FP32 is measured as served: on OpenVINO, hint
``SERVED_HINT``. A member with a recurrence (``recurrence``: clip_text's BiLSTM) stays FP32, which the
gateway's OpenVINO engine runs in BF16 (``FLOAT_METHOD``): static INT8 of clip_text agreed only 92
to 95% with FP32 at ViT-B-32 on real memes (ensemble 97.7%, under issue 21's 98%); BF16 agrees 99%
and runs as fast as ONNX Runtime's dynamic INT8 of it. An older export's packed BiLSTM
(``recurrence`` "per-row"), which OpenVINO runs wrongly, gets ONNX Runtime's dynamic INT8.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from memotion.tokenizer import trim_token_ids

SERVED_ENGINE = "openvino"
SERVED_HINT = "bf16"
CALIBRATION_BATCH = 8  # memes per calibration call: the gateway's batch
METHOD = (
    "static QDQ for OpenVINO: MatMul/Gemm by a weight, weights int8 per channel, activations int8 "
    "symmetric per tensor (max |x| on {memes} training memes)"
)
FLOAT_METHOD = (
    "none: the FP32 graph, run by OpenVINO with its bf16 precision hint (a recurrence: static INT8 agrees too little)"
)


def activation_matmuls(path: Path) -> list[str]:
    """The MatMul nodes of the graph at ``path`` with no constant operand (attention's scores and mixing)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    constants = {i.name for i in graph.initializer} | {n.output[0] for n in graph.node if n.op_type == "Constant"}
    return [n.name for n in graph.node if n.op_type == "MatMul" and not set(n.input) & constants]


def recurrence(path: Path) -> Literal["per-row", "full-length"] | None:
    """The graph at ``path``'s recurrence, read once: "per-row" when an LSTM / GRU / RNN runs over
    per-row lengths (``sequence_lens`` from the inputs: a packed BiLSTM, which OpenVINO runs wrongly
    for the shorter rows of a batch, so the gateway's OpenVINO engine leaves it to ONNX Runtime;
    clip_text's is exported on full-length rows since training/models/ragged_bilstm.py),
    "full-length" for any other (clip_text's and bert_text's BiLSTM), None without one."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    recurrent = [n for n in graph.node if n.op_type in ("LSTM", "GRU", "RNN")]
    if any(len(n.input) > 4 and n.input[4] for n in recurrent):
        return "per-row"
    return "full-length" if recurrent else None


def batches(feeds: dict[str, np.ndarray], size: int, trim: bool) -> list[dict[str, np.ndarray]]:
    """``feeds`` ``size`` memes a call; ``trim``: ids cut to each call's longest text (as served)."""
    memes = len(next(iter(feeds.values())))
    parts = [{k: np.ascontiguousarray(v[i : i + size]) for k, v in feeds.items()} for i in range(0, memes, size)]
    if trim and parts and "input_ids" in parts[0]:
        parts = [{**p, "input_ids": np.ascontiguousarray(trim_token_ids(p["input_ids"]))} for p in parts]
    return parts


class _CalibrationReader:
    """ONNX Runtime's CalibrationDataReader over prepared batches."""

    def __init__(self, parts: list[dict[str, np.ndarray]]) -> None:
        self._parts = iter(parts)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._parts, None)


def quantize_int8_static(
    fp32: Path,
    out: Path,
    calibration: dict[str, np.ndarray],
    trim: bool,
    weights_only: bool = True,
    symmetric: bool = True,
) -> Path:
    """The static INT8 QDQ copy of the ONNX graph ``fp32`` at ``out``, its activation ranges from
    ``calibration`` (the graph's inputs, real memes); ``weights_only=False`` quantises attention's
    activation-by-activation matmuls too (bench/openvino_members.py: no faster, lower agreement);
    ``symmetric=False``: activations uint8 with a zero point (the earlier method, slower on OpenVINO)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        str(fp32),
        str(out),
        _CalibrationReader(batches(calibration, CALIBRATION_BATCH, trim)),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul", "Gemm"],
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=activation_matmuls(fp32) if weights_only else [],
        extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True},
    )
    return out


def openvino_outputs(
    path: Path, parts: list[dict[str, np.ndarray]], outputs: Sequence[str], hint: str = SERVED_HINT
) -> list[np.ndarray]:
    """``outputs`` of the graph at ``path`` on OpenVINO's CPU plugin (precision ``hint``), one call per part."""
    try:
        import openvino as ov
    except ImportError as err:
        raise RuntimeError(
            "--quantize int8-static checks its members on OpenVINO: pip install 'memotion[openvino]'"
        ) from err

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": hint})
    request = compiled.create_infer_request()
    results = []
    for part in parts:  # copied at once: the request's output buffers are reused by its next call
        answer = request.infer(part)
        results.append([np.array(answer[name]) for name in outputs])
    return [np.concatenate([r[k] for r in results]) for k in range(len(outputs))]
