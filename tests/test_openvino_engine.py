"""The OpenVINO engine of the embedded backend (``MEMOTION_ENGINE=openvino``) and the static INT8
export made for it (``memotion export --quantize int8-static``): real OpenVINO, real ONNX Runtime,
the tiny exported repository."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from memotion.data_format import load_split
from memotion.manifest import QuantizationEntry, load_manifest
from memotion.preprocess import images_to_batch
from memotion.tokenizer import ClipTokenizer
from service.core.errors import GatewayStartupError
from service.core.settings import GatewaySettings
from service.inference.backends import create_backend
from service.inference.backends.base import BackendError
from service.inference.backends.openvino_backend import (
    OpenVinoBackend,
    compile_config,
    model_precision,
    openvino_mismatch,
    repository_precision,
)
from service.inference.backends.ort_backend import OnnxRuntimeBackend
from tests.test_ragged_bilstm import packed_clip_text_graph
from training.backbone import create_clip
from training.models.clip_text import ClipTextClassifier
from training.models.encoders import ClipTextEncoder


def meme_feeds(repository: Path, data: Path, memes: int = 12) -> dict[str, np.ndarray]:
    manifest = load_manifest(repository)
    records = load_split(data / "val.csv")[:memes]
    tokenizer = ClipTokenizer(repository / manifest.tokenizer.file, manifest.tokenizer.context_length)
    images = [Image.open(r.image_path).convert("RGB") for r in records]
    return {
        "input_ids": tokenizer([r.text for r in records]),
        "pixel_values": images_to_batch(images, manifest.preprocessing),
    }


def test_openvino_gives_onnx_runtimes_labels_on_the_demo_repository(model_repository, synthetic_data):
    members = load_manifest(model_repository).members()
    feeds = meme_feeds(model_repository, synthetic_data)
    reference = OnnxRuntimeBackend(model_repository, members, intra_op_threads=1)
    engine = OpenVinoBackend(model_repository, members, threads=1)  # auto: f32 for an FP32 export
    try:
        for member in members:
            expected, got = reference.infer(member, feeds), engine.infer(member, feeds)
            for head in member.outputs:
                np.testing.assert_allclose(got[head], expected[head], atol=1e-4, err_msg=f"{member.name} {head}")
                assert (got[head].argmax(-1) == expected[head].argmax(-1)).all(), (member.name, head)
            one = engine.infer(member, {k: v[:1] for k, v in feeds.items()})  # dynamic batch axis
            np.testing.assert_allclose(one[member.outputs[0]], expected[member.outputs[0]][:1], atol=1e-4)
    finally:
        engine.close()
    assert not engine.ready()


def test_compile_config_pins_threads_only_when_asked():
    assert compile_config(2, "bf16") == {
        "INFERENCE_PRECISION_HINT": "bf16",
        "INFERENCE_NUM_THREADS": 2,
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
        "ENABLE_CPU_PINNING": False,
    }
    assert compile_config(0, "f32", cpu_pinning=True)["ENABLE_CPU_PINNING"] is True
    with pytest.raises(BackendError, match="threads"):
        compile_config(-1, "f32")


def test_the_gateways_engine_setting_picks_openvino_and_bad_settings_fail_clearly(model_repository, tmp_path):
    manifest = load_manifest(model_repository)
    settings = GatewaySettings(model_repository=model_repository, engine="openvino", batching=False)
    backend = create_backend(settings, manifest, model_repository, manifest.members())
    assert backend.name == "openvino" and backend.ready()
    member = manifest.members()[0]
    assert backend.compiled_property(member, "ENABLE_CPU_PINNING") is False  # the default: unpinned
    pinned = create_backend(
        settings.model_copy(update={"openvino_cpu_pinning": True}), manifest, model_repository, [member]
    )
    assert pinned.compiled_property(member, "ENABLE_CPU_PINNING") is True
    with pytest.raises(ValidationError, match="engine"):
        GatewaySettings(engine="tensorrt")
    with pytest.raises(ValidationError, match="openvino_precision"):
        GatewaySettings(openvino_precision="fp16")
    with pytest.raises(BackendError, match="precision"):
        OpenVinoBackend(model_repository, manifest.members(), precision="int4")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text(json.dumps(json.loads((model_repository / "manifest.json").read_text())))
    (broken / member.file).parent.mkdir(parents=True)
    (broken / member.file).write_bytes(b"not an onnx graph")
    with pytest.raises(GatewayStartupError, match=f"model {member.name}: openvino cannot load"):
        create_backend(settings, manifest, broken, [member])


def test_models_openvino_would_answer_differently_run_on_onnx_runtime(model_repository, tmp_path):
    """A packed BiLSTM over per-text lengths (clip_text exported before its full-length rows),
    raw-text models and the INT8 OCR detector stay on ONNX Runtime; today's clip_text runs on OpenVINO."""
    import torch

    members = {m.name: m for m in load_manifest(model_repository).members()}
    engine = OpenVinoBackend(model_repository, list(members.values()), threads=1)
    assert engine.engine_of(members["clip_text"]) == "openvino"
    assert engine.engine_of(members["clip_image"]) == "openvino"
    torch.manual_seed(0)
    packed = ClipTextClassifier(ClipTextEncoder(create_clip("memotion-tiny")), 16, 16).eval()
    packed_clip_text_graph(packed, tmp_path / members["clip_text"].file)  # an older repository's clip_text
    older = OpenVinoBackend(tmp_path, [members["clip_text"]], threads=1)
    assert older.engine_of(members["clip_text"]) == "onnxruntime"
    text_model = members["clip_image"].model_copy(update={"inputs": ("text",)})
    assert "raw text" in str(openvino_mismatch(text_model))
    ocr = load_manifest(model_repository).ocr
    assert ocr is not None and all(openvino_mismatch(m) is None for m in ocr.models())  # FP32 OCR: OpenVINO
    int8_detector = ocr.detector.model_copy(update={"source": ocr.detector.source + "; int8 static QDQ"})
    assert "INT8 OCR detector" in str(openvino_mismatch(int8_detector))  # it crashes OpenVINO's compiler
    dynamic = QuantizationEntry(
        precision="int8", method="onnxruntime dynamic", inputs="sample inputs", memes=1,
        label_agreement={}, max_abs_logit_diff=0.0,
    )  # fmt: skip
    int8_member = members["clip_image"].model_copy(update={"quantization": dynamic})
    assert "made for onnxruntime" in str(openvino_mismatch(int8_member))  # --quantize int8: ONNX Runtime's
    static = dynamic.model_copy(update={"engine": "openvino", "precision_hint": "bf16"})
    static_member = members["clip_image"].model_copy(update={"quantization": static})
    assert repository_precision([*members.values(), *ocr.models()]) == "f32"  # FP32 repository: f32
    assert repository_precision([static_member, *ocr.models()]) == "bf16"  # made for BF16: OCR follows
    assert (
        model_precision(ocr.recognizer, "auto", "bf16") == "bf16" and model_precision(ocr.recognizer, "auto") == "f32"
    )
    assert model_precision(ocr.recognizer, "f32", "bf16") == "f32"  # an explicit setting wins


@pytest.mark.slow
def test_int8_static_export_is_checked_on_openvino_and_served_there(tiny_run, synthetic_data, tmp_path):
    """`--quantize int8-static`: QDQ matmuls calibrated on the run's training memes (activations
    int8, symmetric: zero point 0, which OpenVINO fuses into its INT8 matmuls), agreement with FP32
    measured on OpenVINO with the bf16 hint and said in the manifest; the engine's ``auto``
    precision serves it with that hint; clip_text (a recurrence: its static INT8 agreed too little
    at ViT-B-32) stays FP32 there, which OpenVINO serves in BF16, and the manifest says so; ONNX
    Runtime still loads every graph."""
    import onnx
    from onnx import numpy_helper

    from training.export import export_run

    lines: list[str] = []
    repository = export_run(tiny_run, tmp_path / "static", log=lines.append, quantize="int8-static")
    manifest = load_manifest(repository)
    for member in manifest.members():
        quantization = member.quantization
        assert quantization is not None and set(quantization.label_agreement) == set(member.outputs), lines
        assert quantization.engine == "openvino" and quantization.precision_hint == "bf16", lines
        assert model_precision(member, "auto") == "bf16" and model_precision(member, "f32") == "f32"
        graph = onnx.load(str(repository / member.file)).graph
        ops = {n.op_type for n in graph.node}
        if member.name == "clip_text":  # its FP32 graph, BiLSTM included
            assert quantization.precision == "bf16" and "LSTM" in ops and "QuantizeLinear" not in ops
            continue
        assert quantization.precision == "int8" and "training memes" in quantization.method
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        zero_points = [constants[n.input[2]] for n in graph.node if n.op_type == "QuantizeLinear"]
        assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    assert any("as served: openvino, bf16" in line for line in lines), lines
    assert any("clip_text stays FP32, served by OpenVINO in BF16" in line for line in lines), lines
    assert manifest.ocr is not None and "int8" not in manifest.ocr.detector.source  # FP32: OpenVINO reads it
    assert repository_precision([*manifest.members(), *manifest.ocr.models()]) == "bf16"  # OCR follows
    assert model_precision(manifest.ocr.recognizer, "auto", "bf16") == "bf16"
    assert repository_precision(manifest.ocr.models()) == "f32"  # nothing measured in BF16
    feeds = meme_feeds(repository, synthetic_data)
    engine = OpenVinoBackend(repository, manifest.members(), threads=1)
    ort = OnnxRuntimeBackend(repository, manifest.members(), intra_op_threads=1)
    assert all(engine.engine_of(member) == "openvino" for member in manifest.members())
    for member in manifest.members():
        served, on_ort = engine.infer(member, feeds), ort.infer(member, feeds)
        assert all(np.isfinite(served[h]).all() and served[h].shape == on_ort[h].shape for h in member.outputs)
