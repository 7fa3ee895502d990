"""Triton configs generated from the manifest (checked by parsing them as Triton's own ModelConfig
protobuf), the files export writes, gateway settings for Triton, and log/environment handling.
No server here: tests/test_triton_server.py runs a real tritonserver."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from memotion.labels import ALL_TASKS, TASK_B_NAMES
from memotion.manifest import EnsembleEntry, Manifest, ModelEntry, Preprocessing, TaskEntry, TokenizerEntry
from memotion.triton_repository import (
    PYTHON_BACKEND_MODEL_SOURCE,
    VARIANTS,
    TensorSpec,
    TritonBatching,
    config_path,
    missing_triton_files,
    model_config,
    onnx_tensors,
    to_pbtxt,
    write_triton_files,
)
from service.core.settings import GatewaySettings
from service.inference.backends.triton_endpoint import triton_endpoint, triton_metrics_url
from service.launchers.triton_server import TritonServerError, failed_models, find_triton_install

INPUTS = {"clip_text": ("input_ids",), "clip_image": ("pixel_values",), "clip_multi": ("input_ids", "pixel_values")}


def make_manifest(version: int = 3, context_length: int = 32, image_size: int = 64) -> Manifest:
    outputs = tuple(t.name for t in ALL_TASKS)
    return Manifest(
        repository_version="test",
        created_at="2024-01-01T00:00:00+00:00",
        tasks=tuple(TaskEntry(name=t.name, labels=t.labels, codes=t.codes) for t in ALL_TASKS),
        task_b_names=dict(TASK_B_NAMES),
        preprocessing=Preprocessing(image_size=image_size),
        tokenizer=TokenizerEntry(file="tokenizer/tokenizer.json", context_length=context_length),
        models=tuple(
            ModelEntry(
                name=kind,
                kind=kind,
                version=version,
                file=f"{kind}/{version}/model.onnx",
                inputs=inputs,
                outputs=outputs,
            )
            for kind, inputs in INPUTS.items()
        ),
        ensemble=EnsembleEntry(members=tuple(INPUTS)),
    )


def write_graph(path: Path, model: ModelEntry, manifest: Manifest, extra_outputs: dict[str, int] | None = None) -> Path:
    """An ONNX file with ``model``'s graph signature as export writes it (dynamic batch axis first)."""
    import onnx
    from onnx import TensorProto, helper

    size, length = manifest.preprocessing.image_size, manifest.tokenizer.context_length
    shapes = {
        "input_ids": (TensorProto.INT64, ["batch", length]),
        "pixel_values": (TensorProto.FLOAT, ["batch", 3, size, size]),
    }
    inputs = [helper.make_tensor_value_info(n, *shapes[n]) for n in model.inputs]
    classes = {**{t.name: len(t.labels) for t in manifest.tasks}, **(extra_outputs or {})}
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", classes[n]]) for n in classes]
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(helper.make_graph([], model.name, inputs, outputs)), str(path))
    return path


def parsed(
    model: ModelEntry, manifest: Manifest, variant: str, batching: TritonBatching = TritonBatching()
) -> model_config_pb2.ModelConfig:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        inputs, outputs = onnx_tensors(write_graph(Path(folder) / "model.onnx", model, manifest), model)
    text = to_pbtxt(model_config(model, inputs, outputs, variant, batching))  # type: ignore[arg-type]
    return text_format.Parse(text, model_config_pb2.ModelConfig())


@pytest.mark.parametrize("variant", VARIANTS)
def test_configs_are_valid_triton_model_configs_with_the_graph_tensors(variant: str) -> None:
    manifest = make_manifest(context_length=77, image_size=224)
    for model in manifest.models:
        config = parsed(model, manifest, variant)
        assert config.name == model.name
        assert list(config.version_policy.specific.versions) == [3]
        assert config.max_batch_size == 32
        inputs = {t.name: (model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in config.input}
        expected = {"input_ids": ("TYPE_INT64", [77]), "pixel_values": ("TYPE_FP32", [3, 224, 224])}
        assert inputs == {name: expected[name] for name in model.inputs}
        outputs = [(t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in config.output]
        assert outputs == [(t.name, "TYPE_FP32", [len(t.labels)]) for t in ALL_TASKS]
        assert list(config.dynamic_batching.preferred_batch_size) == [8]
        assert config.dynamic_batching.max_queue_delay_microseconds == 2000


def test_cpu_and_gpu_variants_differ_only_in_backend_instances_and_optimisation() -> None:
    manifest = make_manifest()
    model = manifest.model("clip_multi")
    cpu, gpu, trt = (parsed(model, manifest, v) for v in ("cpu", "gpu", "gpu_tensorrt"))
    assert (cpu.backend, cpu.platform) == ("python", "")
    assert (gpu.platform, gpu.default_model_filename) == ("onnxruntime_onnx", "model.onnx")
    assert [g.kind for g in cpu.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]
    assert [g.kind for g in gpu.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_GPU]
    accelerators = trt.optimization.execution_accelerators.gpu_execution_accelerator
    assert [a.name for a in accelerators] == ["tensorrt"]
    assert dict(accelerators[0].parameters)["precision_mode"] == "FP16"
    assert not gpu.HasField("optimization")
    for config in (cpu, gpu, trt):
        for field in ("backend", "platform", "default_model_filename", "instance_group", "optimization"):
            config.ClearField(field)
    assert cpu == gpu == trt


def test_batching_settings_reach_every_variant_and_bad_ones_are_refused() -> None:
    manifest = make_manifest()
    batching = TritonBatching(
        max_batch_size=64,
        preferred_batch_sizes=(16, 32),
        max_queue_delay_us=500,
        cpu_instances=2,
        gpu_instances=3,
        intra_op_threads=1,
    )
    for variant in VARIANTS:
        config = parsed(manifest.model("clip_text"), manifest, variant, batching)
        assert config.max_batch_size == 64
        assert list(config.dynamic_batching.preferred_batch_size) == [16, 32]
        assert config.dynamic_batching.max_queue_delay_microseconds == 500
        assert config.instance_group[0].count == (2 if variant == "cpu" else 3)
        assert config.parameters["intra_op_thread_count"].string_value == "1"
    with pytest.raises(ValueError, match="preferred batch sizes"):
        TritonBatching(max_batch_size=8, preferred_batch_sizes=(16,))
    with pytest.raises(ValueError):
        TritonBatching(cpu_instances=0)


def test_to_pbtxt_quotes_strings_and_writes_enums_bare() -> None:
    from memotion.triton_repository import Enum

    text = to_pbtxt({"name": 'a "quoted" \\ name', "kind": Enum("KIND_CPU"), "flag": True, "dims": [1, 2]})
    assert text == 'name: "a \\"quoted\\" \\\\ name"\nkind: KIND_CPU\nflag: true\ndims: [ 1, 2 ]'


def test_graph_tensors_follow_the_manifest_names_and_include_a_direct_task_b_head(tmp_path: Path) -> None:
    manifest = make_manifest()
    model = manifest.model("clip_multi").model_copy(update={"task_b_output": "task_b"})
    path = write_graph(tmp_path / "model.onnx", model, manifest, extra_outputs={"task_b": 4, "unused": 7})
    inputs, outputs = onnx_tensors(path, model)
    assert inputs == [
        TensorSpec("input_ids", "TYPE_INT64", (32,)),
        TensorSpec("pixel_values", "TYPE_FP32", (3, 64, 64)),
    ]
    assert [o.name for o in outputs] == [t.name for t in ALL_TASKS] + ["task_b"]  # not "unused"
    assert outputs[-1] == TensorSpec("task_b", "TYPE_FP32", (4,))
    missing = model.model_copy(update={"task_b_output": "absent"})
    with pytest.raises(ValueError, match="has no tensor 'absent'"):
        onnx_tensors(path, missing)


def test_write_triton_files_lays_out_every_variant_and_the_python_model(tmp_path: Path) -> None:
    manifest = make_manifest(version=2)
    for model in manifest.models:
        write_graph(tmp_path / model.file, model, manifest)
    assert missing_triton_files(tmp_path, manifest) == [
        f"{m}/{f}" for m in INPUTS for f in ("config.pbtxt", "2/model.py")
    ]
    written = write_triton_files(tmp_path, manifest)
    assert len(written) == 3 * (len(VARIANTS) + 1)
    assert (tmp_path / "clip_text/configs/gpu.pbtxt").is_file()
    assert (tmp_path / "clip_text/configs/gpu_tensorrt.pbtxt").is_file()
    assert config_path(tmp_path / "clip_text", "cpu") == tmp_path / "clip_text/config.pbtxt"
    assert (tmp_path / "clip_multi/2/model.py").read_text() == PYTHON_BACKEND_MODEL_SOURCE.read_text()
    assert missing_triton_files(tmp_path, manifest) == []
    (tmp_path / "clip_image/config.pbtxt").unlink()
    assert missing_triton_files(tmp_path, manifest) == ["clip_image/config.pbtxt"]


def test_a_model_outside_the_triton_layout_is_refused(tmp_path: Path) -> None:
    manifest = make_manifest()
    odd = manifest.model_copy(update={"models": (manifest.models[0].model_copy(update={"file": "elsewhere/m.onnx"}),)})
    with pytest.raises(ValueError, match="Triton's layout"):
        write_triton_files(tmp_path, odd)


def test_triton_url_scheme_picks_the_protocol_and_the_metrics_url_follows_the_host() -> None:
    assert triton_endpoint(GatewaySettings()) == ("grpc", "127.0.0.1:8001")
    assert triton_metrics_url(GatewaySettings()) == "http://127.0.0.1:8002/metrics"
    http = GatewaySettings(triton_url="http://triton:8000/")
    assert triton_endpoint(http) == ("http", "triton:8000")
    assert triton_metrics_url(http) == "http://triton:8002/metrics"
    assert triton_endpoint(GatewaySettings(triton_url="t:9", triton_protocol="http")) == ("http", "t:9")
    assert triton_metrics_url(GatewaySettings(triton_metrics_url="none")) is None
    with pytest.raises(ValueError, match="host:port"):
        triton_endpoint(GatewaySettings(triton_url="ftp://x:1"))


def test_failed_model_lines_are_picked_out_of_a_triton_log() -> None:
    log = (
        'I1123 model.cc] "loading"\n'
        "E1123 model_lifecycle.cc:654] \"failed to load 'clip_multi' version 1: Not found: no model.py\"\n"
        "E1123 model_repository_manager.cc:1460] \"Poll failed for model directory 'tokenizer': "
        'Invalid model name"\n'
    )
    assert failed_models(log) == [
        "Poll failed for model directory 'tokenizer': Invalid model name",
        "failed to load 'clip_multi' version 1: Not found: no model.py",
    ]


def test_a_missing_triton_environment_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(TritonServerError, match="make .venv-triton"):
        find_triton_install(tmp_path / "no-venv" / "bin" / "python")
