"""The embedded backend's dynamic batcher (service/inference/batching.py) on real ONNX Runtime
sessions of small graphs built here: each caller gets its own rows, a bad request fails alone,
token sequences are padded and images of other sizes are not mixed; settings as Triton's."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from memotion.manifest import ModelEntry
from memotion.triton_repository import TensorSpec, TritonBatching, batching_from_config, model_config, to_pbtxt
from service.inference.backends.base import BackendError
from service.inference.backends.ort_backend import OnnxRuntimeBackend
from service.inference.batching import BatchingBackend, ModelBatcher, merge_inputs, split_outputs

VOCAB = 50
EMBED = np.arange(VOCAB * 2, dtype=np.float32).reshape(VOCAB, 2)
EMBED[0] = 0.0  # the pad id adds nothing


def _save(graph, path: Path) -> None:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def text_model(root: Path) -> ModelEntry:
    """input_ids [B, L] -> sentiment [B, 2]: the sum of the tokens' embeddings (Gather: an id out of
    the vocabulary makes ONNX Runtime fail)."""
    from onnx import TensorProto, helper, numpy_helper

    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["embed", "input_ids"], ["vectors"]),
            helper.make_node("ReduceSum", ["vectors", "axes"], ["sentiment"], keepdims=0),
        ],
        "text",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["B", "L"])],
        [helper.make_tensor_value_info("sentiment", TensorProto.FLOAT, ["B", 2])],
        initializer=[numpy_helper.from_array(EMBED, "embed"), axes],
    )
    _save(graph, root / "text" / "1" / "model.onnx")
    return ModelEntry(
        name="text",
        kind="clip_text",
        version=1,
        file="text/1/model.onnx",
        inputs=("input_ids",),
        outputs=("sentiment",),
    )


def image_model(root: Path) -> ModelEntry:
    """pixel_values [B, 3, H, W] -> sentiment [B, 3]: the mean of each channel."""
    from onnx import TensorProto, helper, numpy_helper

    axes = numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "axes")
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["pixel_values", "axes"], ["sentiment"], keepdims=0)],
        "image",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["B", 3, "H", "W"])],
        [helper.make_tensor_value_info("sentiment", TensorProto.FLOAT, ["B", 3])],
        initializer=[axes],
    )
    _save(graph, root / "image" / "1" / "model.onnx")
    return ModelEntry(
        name="image",
        kind="clip_image",
        version=1,
        file="image/1/model.onnx",
        inputs=("pixel_values",),
        outputs=("sentiment",),
    )


class Recorder:
    def __init__(self) -> None:
        self.batches: list[tuple[str, int, int]] = []  # model, rows, requests
        self.lock = threading.Lock()

    def observe_batch(self, model: str, size: int, queue_delays_s) -> None:
        with self.lock:
            self.batches.append((model, size, len(queue_delays_s)))


class GatedRun:
    """Wraps a run function; the first call waits for ``release`` (so that the others queue up)."""

    def __init__(self, run) -> None:
        self.run = run
        self.entered = threading.Event()
        self.release = threading.Event()
        self.first = True

    def __call__(self, feed):
        if self.first:
            self.first = False
            self.entered.set()
            assert self.release.wait(60)
        return self.run(feed)


def run_concurrently(submit, requests: list, gate: GatedRun) -> tuple[list[threading.Thread], list]:
    """``submit(request)`` from one thread each: the first alone until it is held at ``gate``, then
    the others. The answers (or exceptions) in request order."""
    answers: list = [None] * len(requests)

    def call(i: int) -> None:
        try:
            answers[i] = submit(requests[i])
        except Exception as err:
            answers[i] = err

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(requests))]
    threads[0].start()
    assert gate.entered.wait(60)
    for thread in threads[1:]:
        thread.start()
    return threads, answers


def wait_queued(batcher: ModelBatcher, count: int) -> None:
    deadline_polls = 6000
    while len(batcher._queue) < count and deadline_polls:
        threading.Event().wait(0.01)
        deadline_polls -= 1
    assert len(batcher._queue) == count


@pytest.fixture()
def text_backend(tmp_path: Path):
    entry = text_model(tmp_path)
    backend = OnnxRuntimeBackend(tmp_path, [entry], intra_op_threads=1, providers=["CPUExecutionProvider"])
    yield entry, backend
    backend.close()


def test_each_caller_gets_its_own_rows_mixed_sizes_and_lengths(text_backend) -> None:
    entry, backend = text_backend
    gate = GatedRun(lambda feed: backend.run(entry, feed))
    recorder = Recorder()
    batcher = ModelBatcher("text", gate, TritonBatching(max_batch_size=64, max_queue_delay_us=0), {}, recorder)
    rng = np.random.default_rng(0)
    # 1..5 rows each, sequences of 3..9 tokens (padded with 0 when merged)
    requests = [rng.integers(1, VOCAB, (int(rng.integers(1, 6)), int(rng.integers(3, 10)))) for _ in range(12)]
    threads, answers = run_concurrently(lambda ids: batcher.submit({"input_ids": ids}), requests, gate)
    wait_queued(batcher, 11)  # the first runs (held at the gate), the other eleven wait
    gate.release.set()
    for thread in threads:
        thread.join(60)
    batcher.close()
    for ids, answer in zip(requests, answers):
        assert not isinstance(answer, Exception), answer
        np.testing.assert_allclose(answer["sentiment"], EMBED[ids].sum(axis=1))
    # the first alone (it opened the queue), then the eleven that waited meanwhile as one batch
    assert [count for *_, count in recorder.batches] == [1, 11]
    assert sum(rows for _, rows, _ in recorder.batches) == sum(len(r) for r in requests)


def test_an_error_in_one_request_does_not_fail_the_others(text_backend) -> None:
    entry, backend = text_backend
    gate = GatedRun(lambda feed: backend.run(entry, feed))
    batcher = ModelBatcher("text", gate, TritonBatching(max_batch_size=32, max_queue_delay_us=0))
    good = [np.array([[1, 2, 3]]), np.array([[4, 5, 6], [7, 8, 9]]), np.array([[10, 11, 0]])]
    bad = np.array([[1, VOCAB + 7, 2]])  # out of the vocabulary: ONNX Runtime's Gather fails
    requests = [good[0], good[1], bad, good[2]]
    threads, answers = run_concurrently(lambda ids: batcher.submit({"input_ids": ids}), requests, gate)
    wait_queued(batcher, 3)
    gate.release.set()
    for thread in threads:
        thread.join(60)
    batcher.close()
    assert isinstance(answers[2], Exception)
    for i in (0, 1, 3):
        np.testing.assert_allclose(answers[i]["sentiment"], EMBED[requests[i]].sum(axis=1))


def test_batches_stop_at_max_batch_size(text_backend) -> None:
    entry, backend = text_backend
    gate = GatedRun(lambda feed: backend.run(entry, feed))
    recorder = Recorder()
    policy = TritonBatching(max_batch_size=4, preferred_batch_sizes=(), max_queue_delay_us=0)
    batcher = ModelBatcher("text", gate, policy, {}, recorder)
    requests = [np.full((2, 4), i + 1) for i in range(7)]
    threads, answers = run_concurrently(lambda ids: batcher.submit({"input_ids": ids}), requests, gate)
    wait_queued(batcher, 6)
    gate.release.set()
    for thread in threads:
        thread.join(60)
    batcher.close()
    assert all(rows <= 4 for _, rows, _ in recorder.batches)
    for ids, answer in zip(requests, answers):
        np.testing.assert_allclose(answer["sentiment"], EMBED[ids].sum(axis=1))


def test_images_of_other_sizes_are_not_merged(tmp_path: Path) -> None:
    entry = image_model(tmp_path)
    backend = OnnxRuntimeBackend(tmp_path, [entry], intra_op_threads=1, providers=["CPUExecutionProvider"])
    recorder = Recorder()
    batching = BatchingBackend(backend, [entry], {"image": TritonBatching(max_queue_delay_us=0)}, observer=recorder)
    gate = GatedRun(batching._batchers["image"]._run)
    batching._batchers["image"]._run = gate
    rng = np.random.default_rng(1)
    requests = [rng.random((n, 3, s, s), dtype=np.float32) for n, s in ((1, 4), (2, 4), (1, 6), (3, 4), (2, 6))]
    threads, answers = run_concurrently(lambda px: batching.infer(entry, {"pixel_values": px}), requests, gate)
    wait_queued(batching._batchers["image"], 4)
    gate.release.set()
    for thread in threads:
        thread.join(60)
    batching.close()
    for pixels, answer in zip(requests, answers):
        np.testing.assert_allclose(answer["sentiment"], pixels.mean(axis=(2, 3)), rtol=1e-5)
    # the first alone, then one batch per image size among the four that waited
    assert len(recorder.batches) == 3


def test_a_missing_input_is_the_callers_own_error(text_backend) -> None:
    entry, backend = text_backend
    batching = BatchingBackend(backend, [entry], {})
    with pytest.raises(BackendError, match="needs input 'input_ids'"):
        batching.infer(entry, {"pixel_values": np.zeros((1, 3, 2, 2), dtype=np.float32)})
    out = batching.infer(entry, {"input_ids": np.array([[1, 2]])})
    np.testing.assert_allclose(out["sentiment"], EMBED[[[1, 2]]].sum(axis=1))
    batching.close()


def test_merge_pads_sequences_and_split_cuts_rows_back() -> None:
    merged = merge_inputs([{"input_ids": np.array([[1, 2]])}, {"input_ids": np.array([[3, 4, 5], [6, 7, 8]])}], {})
    np.testing.assert_array_equal(merged["input_ids"], [[1, 2, 0], [3, 4, 5], [6, 7, 8]])
    parts = split_outputs({"y": np.arange(6).reshape(3, 2)}, [1, 2])
    np.testing.assert_array_equal(parts[1]["y"], [[2, 3], [4, 5]])
    with pytest.raises(BackendError):
        split_outputs({"y": np.zeros((2, 2))}, [1, 2])


def test_embedded_batching_reads_the_settings_triton_reads() -> None:
    entry = ModelEntry(
        name="m", kind="clip_text", version=3, file="m/3/model.onnx", inputs=("input_ids",), outputs=("sentiment",)
    )
    inputs = [TensorSpec("input_ids", "TYPE_INT64", (77,))]
    outputs = [TensorSpec("sentiment", "TYPE_FP32", (3,))]
    for batching in (
        TritonBatching(),
        TritonBatching(max_batch_size=16, preferred_batch_sizes=(4, 8), max_queue_delay_us=500),
        TritonBatching(max_batch_size=8, preferred_batch_sizes=(), max_queue_delay_us=0),
    ):
        for variant in ("cpu", "gpu"):
            parsed = batching_from_config(to_pbtxt(model_config(entry, inputs, outputs, variant, batching)))
            assert (parsed.max_batch_size, parsed.preferred_batch_sizes, parsed.max_queue_delay_us) == (
                batching.max_batch_size,
                batching.preferred_batch_sizes,
                batching.max_queue_delay_us,
            )
