"""Export: ONNX (opset >= 17, dynamic batch) + manifest, and ONNX Runtime equals PyTorch."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import open_clip
import pytest
import torch

from memotion.data_format import load_split
from memotion.labels import ALL_TASKS
from memotion.manifest import ManifestError, load_manifest
from memotion.preprocess import images_to_batch
from memotion.tokenizer import ClipTokenizer, trim_token_ids
from memotion.triton_repository import config_path
from training.export import export_run
from training.factory import load_checkpoint
from training.recipe import read_summary

pytestmark = pytest.mark.slow


def test_training_run_writes_checkpoints_curves_and_summary(tiny_run):
    summary = read_summary(tiny_run)
    assert list(summary["models"]) == ["clip_text", "clip_image", "clip_multi"]
    for kind in summary["models"]:
        for name in ("checkpoint.pt", "history.json", "training_curves.png", "confusion_matrices.png"):
            assert (tiny_run / kind / name).stat().st_size > 0, (kind, name)
        assert (tiny_run / kind / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
        history = json.loads((tiny_run / kind / "history.json").read_text())
        assert history and all(0 <= h["val_task_a"] <= 1 for h in history)
    assert set(summary["ensemble"]["validation"]) >= {"task_a", "task_b", "task_c"}


def test_manifest_describes_the_repository(model_repository, tiny_run):
    manifest = load_manifest(model_repository)
    assert [t.name for t in manifest.tasks] == [t.name for t in ALL_TASKS]
    # The ensemble search's voters per head (members: every model that votes on something).
    searched = read_summary(tiny_run)["ensemble"]
    assert manifest.ensemble.members == tuple(searched["members"])
    assert set(manifest.ensemble.members) <= {"clip_text", "clip_image", "clip_multi"}
    assert {t: list(m) for t, m in manifest.ensemble.task_members.items()} == searched["task_members"]
    assert manifest.tokenizer.context_length == read_summary(tiny_run)["context_length"]
    assert "DEMO MODELS" in manifest.notice
    for entry in manifest.models:
        model = onnx.load(str(model_repository / entry.file))
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
        assert [i.name for i in model.graph.input] == list(entry.inputs)
        assert [o.name for o in model.graph.output] == list(entry.outputs)
        assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
        assert 0 <= entry.validation["task_a"] <= 1
        # Dynamic token axis (issue 21) where cutting ids to the longest text keeps the logits.
        axes = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
        if entry.kind in ("clip_text", "clip_multi"):
            assert entry.token_trimming is not None and len(entry.token_trimming.checked_lengths) == 2
            assert entry.token_trimming.max_abs_logit_diff < 1e-4
            assert axes["input_ids"] == ["batch", "tokens"]
            for variant in ("cpu", "gpu"):  # Triton: a variable length (-1) for the token axis
                assert triton_input_dims(model_repository / entry.name, variant)["input_ids"] == [-1]
        else:
            assert entry.token_trimming is None and axes.get("input_ids", ["batch", 32])[1] == 32


def triton_input_dims(model_dir, variant: str) -> dict[str, list[int]]:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse(config_path(model_dir, variant).read_text(), model_config_pb2.ModelConfig())
    return {t.name: list(t.dims) for t in config.input}


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_runtime_equals_pytorch_on_real_memes(model_repository, tiny_run, synthetic_data, batch):
    manifest = load_manifest(model_repository)
    records = load_split(synthetic_data / "val.csv")[:batch]
    tokenizer = ClipTokenizer(model_repository / manifest.tokenizer.file, manifest.tokenizer.context_length)
    from PIL import Image

    images = [Image.open(r.image_path) for r in records]
    feeds = {
        "input_ids": tokenizer([r.text for r in records]),
        "pixel_values": images_to_batch(images, manifest.preprocessing),
    }
    for entry in manifest.models:
        model, _ = load_checkpoint(tiny_run / entry.name / "checkpoint.pt")
        inputs = {name: feeds[name] for name in entry.inputs}
        session = ort.InferenceSession(str(model_repository / entry.file), providers=["CPUExecutionProvider"])
        got = session.run(list(entry.outputs), inputs)
        with torch.no_grad():
            expected = model(*(torch.from_numpy(v) for v in inputs.values()))
        for g, e in zip(got, expected):
            assert g.shape == tuple(e.shape)
            np.testing.assert_allclose(g, e.numpy(), atol=1e-4, rtol=0)


def test_training_tokenizer_equals_exported_tokenizer(model_repository, synthetic_data):
    manifest = load_manifest(model_repository)
    texts = [r.text for r in load_split(synthetic_data / "train.csv")]
    ours = ClipTokenizer(model_repository / manifest.tokenizer.file, manifest.tokenizer.context_length)
    theirs = open_clip.get_tokenizer("memotion-tiny", context_length=manifest.tokenizer.context_length)
    np.testing.assert_array_equal(ours(texts), theirs(texts).numpy())


def test_export_of_a_missing_run_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="memotion train"):
        export_run(tmp_path / "nothing", tmp_path / "repo")


def test_gateway_contract_rejects_incomplete_repository(model_repository, tmp_path):
    (tmp_path / "manifest.json").write_text((model_repository / "manifest.json").read_text())
    with pytest.raises(ManifestError, match="missing"):
        load_manifest(tmp_path)
    with pytest.raises(ManifestError, match="no manifest.json"):
        load_manifest(tmp_path / "empty")


def test_int8_text_member_quantises_its_lstm_and_keeps_the_dynamic_token_axis(model_repository, tmp_path):
    from training.quantize import quantize_int8

    entry = load_manifest(model_repository).model("clip_text")
    int8 = quantize_int8(model_repository / entry.file, tmp_path / "model.onnx")
    graph = onnx.load(str(int8)).graph
    ops = {node.op_type for node in graph.node}
    assert "DynamicQuantizeLSTM" in ops and "LSTM" not in ops, ops
    assert [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim] == ["batch", "tokens"]
    tokenizer = load_manifest(model_repository).tokenizer
    ids = ClipTokenizer(model_repository / tokenizer.file, tokenizer.context_length)(["a short meme", "bhai mast"])
    cut = np.ascontiguousarray(trim_token_ids(ids))
    assert cut.shape[1] < ids.shape[1]
    fp32 = ort.InferenceSession(str(model_repository / entry.file), providers=["CPUExecutionProvider"])
    session = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    # Not bit-equal: INT8 activations are scaled per call, over the rows run (padding or not);
    # cut or full, the INT8 logits are as near the FP32 ones.
    for reference, full, trimmed in zip(
        fp32.run(None, {"input_ids": ids}), session.run(None, {"input_ids": ids}), session.run(None, {"input_ids": cut})
    ):
        assert np.abs(trimmed - reference).max() < max(2 * np.abs(full - reference).max(), 1e-2)
