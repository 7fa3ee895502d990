"""Triton model configurations for an exported model repository, all generated from one source.

For every manifest model ``<m>`` (version ``<v>``) ``write_triton_files`` writes

    <m>/config.pbtxt               CPU (the default): Triton's python backend runs <m>/<v>/model.onnx
                                   with ONNX Runtime, instance_group KIND_CPU. This is what the
                                   tritonserver of the PyPI package nvidia-pytriton can serve (it
                                   ships only the python backend).
    <m>/<v>/model.py               the python backend's model (thin: load model.onnx, run batches)
    <m>/configs/gpu.pbtxt          GPU: platform onnxruntime_onnx (Triton's native ONNX Runtime
                                   backend, NVIDIA's Triton container), instance_group KIND_GPU
    <m>/configs/gpu_tensorrt.pbtxt the same with ONNX Runtime's TensorRT execution accelerator (FP16)

``tritonserver --model-config-name=gpu`` picks ``configs/gpu.pbtxt`` (falling back to
``config.pbtxt`` for a model without one). Everything the variants share -- name, version policy,
max_batch_size, the tensors (the ones the manifest names, with types and dims read from the ONNX
graph), dynamic batching -- comes from ``model_config`` below; they differ only in backend/platform,
instance kind and the optimisation block. No torch here (onnx only when writing), so the gateway
side may import this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from memotion.manifest import Manifest, ServedModel, StageModelEntry

Variant = Literal["cpu", "gpu", "gpu_tensorrt"]
VARIANTS: tuple[Variant, ...] = ("cpu", "gpu", "gpu_tensorrt")
# --model-config-name value -> file, for the non-default variants.
CONFIG_NAMES: dict[Variant, str] = {"gpu": "gpu", "gpu_tensorrt": "gpu_tensorrt"}
CONFIG_FILE = "config.pbtxt"
PYTHON_MODEL_FILE = "model.py"

# ONNX TensorProto element type -> Triton data type.
_ONNX_TO_TRITON = {
    1: "TYPE_FP32",
    2: "TYPE_UINT8",
    3: "TYPE_INT8",
    5: "TYPE_INT16",
    6: "TYPE_INT32",
    7: "TYPE_INT64",
    8: "TYPE_STRING",  # tfidf_lr's text input
    9: "TYPE_BOOL",
    10: "TYPE_FP16",
    11: "TYPE_FP64",
    16: "TYPE_BF16",
}


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output as Triton sees it: dims per item (no batch axis), -1 = variable."""

    name: str
    data_type: str
    dims: tuple[int, ...]


def onnx_tensors(path: Path, model: ServedModel, batched: bool = True) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of ``model`` (the ones the manifest names) read from its ONNX graph.

    ``batched``: the first axis of every tensor must be the batch axis (export makes it dynamic)
    and is left out of the dims; otherwise the dims are the whole shape (Triton max_batch_size 0)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    values = {v.name: v for v in [*graph.input, *graph.output]}

    def spec(name: str) -> TensorSpec:
        if name not in values:
            raise ValueError(
                f"model {model.name}: {path} has no tensor {name!r} (graph inputs/outputs: {sorted(values)})"
            )
        tensor = values[name].type.tensor_type
        if tensor.elem_type not in _ONNX_TO_TRITON:
            raise ValueError(
                f"model {model.name}: tensor {name!r} has ONNX type {tensor.elem_type}, "
                "which Triton configs here do not cover"
            )
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        if not batched:
            return TensorSpec(name, _ONNX_TO_TRITON[tensor.elem_type], tuple(dims))
        if not dims or (dims[0] != -1 and dims[0] != 1):
            raise ValueError(f"model {model.name}: tensor {name!r} has no batch axis first (dims {dims})")
        return TensorSpec(name, _ONNX_TO_TRITON[tensor.elem_type], tuple(dims[1:]))

    return [spec(n) for n in model.inputs], [spec(n) for n in model.served_outputs()]


@dataclass(frozen=True)
class TritonBatching:
    """Triton's batching settings, shared by every variant.

    ``max_batch_size``: the largest batch Triton builds (the ONNX graphs have a dynamic batch axis);
    0: no batching, one item per call and no batch axis (``NO_BATCHING``: a stage model's).
    ``preferred_batch_sizes``: the dynamic batcher sends a batch as soon as it reaches one of these;
    otherwise it waits at most ``max_queue_delay_us`` for more requests.
    """

    max_batch_size: int = 32
    preferred_batch_sizes: tuple[int, ...] = (8,)
    max_queue_delay_us: int = 2000
    cpu_instances: int = 1
    gpu_instances: int = 1
    intra_op_threads: int = 0  # 0: ONNX Runtime decides

    def __post_init__(self) -> None:
        if self.max_batch_size < 0:
            raise ValueError(f"max_batch_size must be >= 0, got {self.max_batch_size}")
        bad = [b for b in self.preferred_batch_sizes if not 1 <= b <= self.max_batch_size]
        if bad:
            raise ValueError(f"preferred batch sizes {bad} not in 1..max_batch_size={self.max_batch_size}")
        if self.max_queue_delay_us < 0 or self.cpu_instances < 1 or self.gpu_instances < 1:
            raise ValueError("queue delay must be >= 0 and instance counts >= 1")


# A model that takes one item per call (a stage model: OSCAR's region detector).
NO_BATCHING = TritonBatching(max_batch_size=0, preferred_batch_sizes=(), max_queue_delay_us=0)


def default_batching(model: ServedModel) -> TritonBatching:
    """Batching for ``model`` when nothing else says: none for a stage model, the defaults otherwise."""
    return NO_BATCHING if isinstance(model, StageModelEntry) else TritonBatching()


def batching_from_config(text: str) -> TritonBatching:
    """The batching settings a config.pbtxt written by ``model_config`` states (defaults for the rest).

    The embedded ONNX Runtime batcher (service/inference/batching.py) reads them from the same file
    Triton reads, so both backends batch alike."""
    import re

    def number(field: str) -> int | None:
        match = re.search(rf"^\s*{field}\s*:\s*(-?\d+)", text, re.MULTILINE)
        return int(match.group(1)) if match else None

    default = TritonBatching()
    preferred = re.search(r"^\s*preferred_batch_size\s*:\s*\[([^\]]*)\]", text, re.MULTILINE)
    single = number("preferred_batch_size")
    sizes = default.preferred_batch_sizes
    if preferred is not None:
        sizes = tuple(int(v) for v in preferred.group(1).replace(",", " ").split())
    elif single is not None:
        sizes = (single,)
    max_batch = number("max_batch_size")
    delay = number("max_queue_delay_microseconds")
    return TritonBatching(
        max_batch_size=max(0, max_batch) if max_batch is not None else default.max_batch_size,
        preferred_batch_sizes=sizes if "dynamic_batching" in text else (),
        max_queue_delay_us=delay
        if delay is not None
        else (default.max_queue_delay_us if "dynamic_batching" in text else 0),
    )


def model_batching(repository: Path, model: ServedModel) -> TritonBatching:
    """``model``'s batching settings: its CPU config.pbtxt's, or its defaults when there is none."""
    path = config_path(Path(repository) / model.name, "cpu")
    return batching_from_config(path.read_text()) if path.is_file() else default_batching(model)


class Enum(str):
    """A protobuf enum value: written bare (``KIND_CPU``), not quoted."""


def _scalar(value: object) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"cannot write {value!r} in protobuf text format")


def to_pbtxt(message: Mapping[str, object], indent: int = 0) -> str:
    """A (nested) dict in protobuf text format; lists are repeated fields."""
    pad = "  " * indent
    lines = []
    for key, value in message.items():
        if isinstance(value, Mapping):
            lines += [f"{pad}{key} {{", to_pbtxt(value, indent + 1), f"{pad}}}"]
        elif isinstance(value, (list, tuple)):
            if value and all(isinstance(v, Mapping) for v in value):
                blocks = [f"{pad}  {{\n{to_pbtxt(v, indent + 2)}\n{pad}  }}" for v in value]
                lines.append(f"{pad}{key} [\n" + ",\n".join(blocks) + f"\n{pad}]")
            else:
                lines.append(f"{pad}{key}: [ " + ", ".join(_scalar(v) for v in value) + " ]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return "\n".join(line for line in lines if line)


def _parameters(values: Mapping[str, str]) -> list[dict[str, object]]:
    return [{"key": key, "value": {"string_value": value}} for key, value in values.items()]


def model_config(
    model: ServedModel,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    variant: Variant,
    batching: TritonBatching = TritonBatching(),
) -> dict[str, object]:
    """The Triton ModelConfig of ``model`` for ``variant``, as a dict (see ``to_pbtxt``)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown Triton config variant {variant!r}; choose from {VARIANTS}")
    config: dict[str, object] = {"name": model.name}
    if variant == "cpu":
        config["backend"] = "python"
    else:
        config["platform"] = "onnxruntime_onnx"
        config["default_model_filename"] = Path(model.file).name
    config.update(
        {
            "version_policy": {"specific": {"versions": [model.version]}},
            "max_batch_size": batching.max_batch_size,
            "input": [{"name": t.name, "data_type": Enum(t.data_type), "dims": list(t.dims)} for t in inputs],
            "output": [{"name": t.name, "data_type": Enum(t.data_type), "dims": list(t.dims)} for t in outputs],
            **_dynamic_batching(batching),
            "instance_group": [
                {"count": batching.cpu_instances, "kind": Enum("KIND_CPU")}
                if variant == "cpu"
                else {"count": batching.gpu_instances, "kind": Enum("KIND_GPU")}
            ],
            "parameters": _parameters({"intra_op_thread_count": str(batching.intra_op_threads)}),
        }
    )
    if variant == "gpu_tensorrt":
        config["optimization"] = _tensorrt_optimization()
    return config


def _dynamic_batching(batching: TritonBatching) -> dict[str, object]:
    """The dynamic batcher's block; none for a model that takes one item per call (max_batch_size 0)."""
    if batching.max_batch_size == 0:
        return {}
    return {
        "dynamic_batching": {
            "preferred_batch_size": list(batching.preferred_batch_sizes),
            "max_queue_delay_microseconds": batching.max_queue_delay_us,
        }
    }


def _tensorrt_optimization() -> dict[str, object]:
    """ONNX Runtime's TensorRT execution provider in FP16 with a 1 GiB workspace."""
    parameters = {"precision_mode": "FP16", "max_workspace_size_bytes": str(1 << 30)}
    accelerator = {
        "name": "tensorrt",
        "parameters": [{"key": key, "value": value} for key, value in parameters.items()],
    }
    return {"execution_accelerators": {"gpu_execution_accelerator": [accelerator]}}


def config_path(model_dir: Path, variant: Variant) -> Path:
    if variant == "cpu":
        return model_dir / CONFIG_FILE
    return model_dir / "configs" / f"{CONFIG_NAMES[variant]}.pbtxt"


# The python backend's model (a real module, linted and tested): Triton hands ``execute`` every
# request its dynamic batcher grouped; they run as one ONNX Runtime batch and are split back.
PYTHON_BACKEND_MODEL_SOURCE = Path(__file__).with_name("triton_backend_model.py")


def write_triton_files(
    repository: Path,
    manifest: Manifest,
    batching: TritonBatching = TritonBatching(),
    models: Sequence[ServedModel] | None = None,
) -> list[Path]:
    """Write every variant's config and the python-backend model for ``models`` (default: every
    model and its stage models). A stage model is written unbatched (``NO_BATCHING``)."""
    written = []
    default: list[ServedModel] = [*manifest.models, *manifest.stage_models()]
    for model in models if models is not None else default:
        model_dir = Path(repository) / model.name
        version_dir = Path(repository) / Path(model.file).parent
        if version_dir != model_dir / str(model.version) or Path(model.file).name != "model.onnx":
            raise ValueError(
                f"model {model.name}: file {model.file} is not <name>/<version>/model.onnx (Triton's layout)"
            )
        policy = NO_BATCHING if isinstance(model, StageModelEntry) else batching
        inputs, outputs = onnx_tensors(Path(repository) / model.file, model, batched=policy.max_batch_size > 0)
        for variant in VARIANTS:
            path = config_path(model_dir, variant)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(to_pbtxt(model_config(model, inputs, outputs, variant, policy)) + "\n")
            written.append(path)
        script = version_dir / PYTHON_MODEL_FILE
        script.write_text(PYTHON_BACKEND_MODEL_SOURCE.read_text())
        written.append(script)
    return written


def missing_triton_files(repository: Path, manifest: Manifest) -> list[str]:
    """Files Triton needs for the manifest's models that are not in ``repository`` (relative paths)."""
    root = Path(repository)
    needed = []
    for model in manifest.served_models():
        model_dir = root / model.name
        needed += [config_path(model_dir, "cpu"), root / model.file, root / Path(model.file).parent / PYTHON_MODEL_FILE]
    return [str(path.relative_to(root)) for path in needed if not path.is_file()]
