"""CLIP-text's BiLSTM without per-row sequence lengths (training/models/ragged_bilstm.py): the
packed ``nn.LSTM``'s numbers on ragged batches, in PyTorch, exported to ONNX Runtime and OpenVINO,
and through ONNX Runtime's dynamic INT8 (DynamicQuantizeLSTM)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import training.models.clip_text as clip_text_module
from service.inference.backends.openvino_backend import recurrence_mismatch
from training.backbone import create_clip
from training.export import export_onnx, output_names
from training.models.clip_text import ClipTextClassifier
from training.models.encoders import ClipTextEncoder
from training.models.ragged_bilstm import ragged_bilstm_final_states, within_length_reversal
from training.quantize import quantize_int8
from training.quantize_static import recurrence

END_OF_TEXT = 49407  # CLIP's highest id: token_lengths reads a text's length from it
CONTEXT = 32  # memotion-tiny's context length


def packed_final_states(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    _, (h_n, _) = lstm(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    return torch.cat([h_n[-2], h_n[-1]], dim=-1)


def test_within_length_reversal_reverses_each_row_up_to_its_length_and_is_its_own_inverse():
    index = within_length_reversal(torch.tensor([3, 1, 5]), 5)
    assert index.tolist() == [[2, 1, 0, 3, 4], [0, 1, 2, 3, 4], [4, 3, 2, 1, 0]]
    assert torch.equal(torch.gather(index, 1, index), torch.arange(5).expand(3, 5))


@pytest.mark.parametrize("layers", [1, 2])
def test_ragged_bilstm_gives_the_packed_lstms_final_states_on_ragged_rows(layers):
    torch.manual_seed(layers)
    lstm = nn.LSTM(6, 5, num_layers=layers, bidirectional=True, batch_first=True).eval()
    x = torch.randn(6, 9, 6)
    lengths = torch.tensor([9, 1, 4, 2, 9, 7])  # the shortest row: one step
    expected = packed_final_states(lstm, x, lengths)
    x_padded = x.clone()
    for row, length in enumerate(lengths.tolist()):
        x_padded[row, length:] = 1e3  # whatever follows a row's length never reaches its states
    got = ragged_bilstm_final_states(lstm, x_padded, lengths)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    (got.sum()).backward()  # trainable: gradients reach the nn.LSTM's own parameters
    assert lstm.weight_hh_l0_reverse.grad is not None and lstm.weight_ih_l0.grad is not None


def test_ragged_bilstm_refuses_an_lstm_it_does_not_compute():
    with pytest.raises(ValueError, match="bidirectional"):
        ragged_bilstm_final_states(nn.LSTM(4, 3, batch_first=True), torch.zeros(1, 2, 4), torch.tensor([2]))


def ragged_ids(lengths: list[int], seed: int) -> np.ndarray:
    """CLIP-style ids: ``length - 1`` tokens, then <end_of_text>, then padding (0)."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((len(lengths), CONTEXT), np.int64)
    for row, length in enumerate(lengths):
        ids[row, : length - 1] = rng.integers(1, 1000, length - 1)
        ids[row, length - 1] = END_OF_TEXT
    return ids


@pytest.fixture(scope="module")
def tiny_text_model() -> ClipTextClassifier:
    torch.manual_seed(0)
    return ClipTextClassifier(ClipTextEncoder(create_clip("memotion-tiny")), 16, 16).eval()


@pytest.fixture(scope="module")
def exported(tiny_text_model, tmp_path_factory) -> Path:
    return export_onnx(
        tiny_text_model, {"input_ids": ragged_ids([5, 2, 32], 0)}, tmp_path_factory.mktemp("ragged") / "m.onnx"
    )


def torch_logits(model: nn.Module, ids: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        return [t.numpy() for t in model(torch.from_numpy(ids))]


def test_clip_text_exports_its_bilstm_without_sequence_lengths_and_both_engines_match_pytorch(
    tiny_text_model, exported
):
    """Torch (packed) vs ONNX Runtime vs OpenVINO f32 on ragged batches, full and trimmed token axis."""
    import openvino as ov

    lstms = [n for n in onnx.load(str(exported)).graph.node if n.op_type == "LSTM"]
    assert len(lstms) == 4 and all(len(n.input) < 5 or not n.input[4] for n in lstms)  # 2 layers x 2 directions
    assert recurrence(exported) == "full-length"
    graph = ov.Core().read_model(str(exported))
    assert recurrence_mismatch(graph) is None  # the gateway's OpenVINO engine runs it
    request = ov.Core().compile_model(graph, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}).create_infer_request()
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    names = output_names(tiny_text_model)
    for lengths in ([3, 2, 17, 30, 2, 11, 6], [2], [9, 32, 4]):
        ids = ragged_ids(lengths, len(lengths))
        expected = torch_logits(tiny_text_model, ids)
        for feed in (ids, np.ascontiguousarray(ids[:, : max(lengths)])):
            on_ort = session.run(names, {"input_ids": feed})
            on_ov = request.infer({"input_ids": feed})
            for name, want, got in zip(names, expected, on_ort):
                np.testing.assert_allclose(got, want, atol=1e-5, err_msg=f"onnxruntime {name} {lengths}")
                np.testing.assert_allclose(np.array(on_ov[name]), want, atol=1e-5, err_msg=f"openvino {name}")


def packed_clip_text_graph(model: ClipTextClassifier, path: Path) -> Path:
    """``model`` exported as clip_text was before ragged_bilstm: its packed BiLSTM in the graph
    (ONNX LSTMs with ``sequence_lens`` from the ids)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(clip_text_module, "exporting", lambda: False)
        return export_onnx(model, {"input_ids": ragged_ids([5, 2, 32], 0)}, path)


def test_a_graph_with_per_row_sequence_lengths_is_still_recognised(tiny_text_model, tmp_path):
    """Repositories exported before (the packed BiLSTM in the graph) keep running on ONNX Runtime."""
    import openvino as ov

    old = packed_clip_text_graph(tiny_text_model, tmp_path / "old.onnx")
    assert recurrence(old) == "per-row"
    assert "per-row lengths" in str(recurrence_mismatch(ov.Core().read_model(str(old))))


def test_dynamic_int8_quantises_the_four_lstms_and_agrees_with_fp32(tiny_text_model, exported, tmp_path):
    int8 = quantize_int8(exported, tmp_path / "int8.onnx")
    ops = [n.op_type for n in onnx.load(str(int8)).graph.node]
    assert ops.count("DynamicQuantizeLSTM") == 4 and "LSTM" not in ops
    ids = ragged_ids([3, 2, 17, 30, 2, 11, 6, 25], 8)
    names = output_names(tiny_text_model)
    fp32 = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"]).run(names, {"input_ids": ids})
    got = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"]).run(names, {"input_ids": ids})
    for name, want, have in zip(names, fp32, got):
        assert np.abs(have - want).max() < 0.05, name
        assert np.mean(have.argmax(-1) == want.argmax(-1)) >= 0.75, name
