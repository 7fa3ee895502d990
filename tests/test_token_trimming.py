"""Dynamic token length (issue 21): CLIP ids cut to the batch's longest text, and the gateway's
backends doing it only for models whose manifest entry says their logits do not change so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from memotion.manifest import ModelEntry, TokenTrimmingEntry
from memotion.tokenizer import trim_token_ids
from service.inference.backends.base import trimmed_feed
from service.inference.backends.ort_backend import OnnxRuntimeBackend
from service.inference.backends.triton_backend import TOKEN_MULTIPLE

EOT = 49407
IDS = np.zeros((3, 77), dtype=np.int64)
IDS[0, :5] = [49406, 320, 1125, 539, EOT]  # 5 tokens
IDS[1, :2] = [49406, EOT]  # the empty text
IDS[2, :19] = [49406, *range(400, 417), EOT]  # 19 tokens: the longest
TRIMMING = TokenTrimmingEntry(checked_lengths=(19, 48), max_abs_logit_diff=0.0)


def test_ids_are_cut_after_the_longest_texts_end_of_text():
    cut = trim_token_ids(IDS)
    assert cut.shape == (3, 19) and np.shares_memory(cut, IDS)
    assert (cut.argmax(axis=1) == IDS.argmax(axis=1)).all()  # every <end_of_text> kept
    assert trim_token_ids(IDS, multiple=16).shape == (3, 32)
    long = np.zeros((1, 77), dtype=np.int64)
    long[0, :70] = 400
    long[0, 69] = EOT
    assert trim_token_ids(long, multiple=16).shape == (1, 77)  # 80 rounded: never past the context length
    long[0, 69:] = [400] * 7 + [EOT]  # a text truncated at the context length keeps all 77
    assert trim_token_ids(long).shape == (1, 77)


def entry(trimming: TokenTrimmingEntry | None) -> ModelEntry:
    return ModelEntry(
        name="text",
        kind="clip_text",
        version=1,
        file="text/1/model.onnx",
        inputs=("input_ids",),
        outputs=("sentiment",),
        token_trimming=trimming,
    )


def test_feed_is_trimmed_only_where_the_manifest_allows_it():
    pixels = np.zeros((3, 3, 8, 8), dtype=np.float32)
    assert trimmed_feed(entry(TRIMMING), {"input_ids": IDS, "pixel_values": pixels})["input_ids"].shape == (3, 19)
    assert trimmed_feed(entry(TRIMMING), {"input_ids": IDS}, TOKEN_MULTIPLE)["input_ids"].shape == (3, 32)
    assert trimmed_feed(entry(None), {"input_ids": IDS})["input_ids"].shape == (3, 77)  # older repositories


def write_width_graph(path: Path) -> None:
    """input_ids [B, tokens] -> sentiment [B, tokens] (the ids as floats): shows the length run."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["input_ids"], ["sentiment"], to=TensorProto.FLOAT)],
        "text",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"])],
        [helper.make_tensor_value_info("sentiment", TensorProto.FLOAT, ["batch", "tokens"])],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.mark.parametrize(("trimming", "width"), [(TRIMMING, 19), (None, 77)])
def test_onnx_runtime_backend_runs_the_trimmed_ids(tmp_path, trimming, width):
    write_width_graph(tmp_path / "text" / "1" / "model.onnx")
    model = entry(trimming)
    backend = OnnxRuntimeBackend(tmp_path, [model], intra_op_threads=1)
    out = backend.infer(model, {"input_ids": IDS})["sentiment"]
    assert out.shape == (3, width)
    np.testing.assert_array_equal(out, IDS[:, :width].astype(np.float32))
