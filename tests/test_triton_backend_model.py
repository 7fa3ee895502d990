"""The Triton python-backend model (memotion/triton_backend_model.py) run outside Triton.

``triton_python_backend_utils`` exists only inside a tritonserver process, so this test gives the
module a minimal stand-in with the same calls (tensors by name, responses, errors) and checks the
model's own logic: requests Triton grouped run as one ONNX Runtime batch and each gets its own
rows back; a failure answers every request with an error. tests/test_triton_server.py runs the
same file inside a real tritonserver."""

from __future__ import annotations

import importlib
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest


class _Tensor:
    def __init__(self, name: str, value: np.ndarray) -> None:
        self.name, self.value = name, value

    def as_numpy(self) -> np.ndarray:
        return self.value


class _Response:
    def __init__(self, output_tensors: list[_Tensor], error: object = None) -> None:
        self.output_tensors, self.error = output_tensors, error


class _Request:
    def __init__(self, **tensors: np.ndarray) -> None:
        self.tensors = {name: _Tensor(name, value) for name, value in tensors.items()}


def _stand_in() -> types.ModuleType:
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor = _Tensor  # type: ignore[attr-defined]
    module.InferenceResponse = _Response  # type: ignore[attr-defined]
    module.TritonError = lambda message: message  # type: ignore[attr-defined]
    module.get_input_tensor_by_name = lambda request, name: request.tensors[name]  # type: ignore[attr-defined]
    return module


@pytest.fixture()
def backend_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The model initialised on a one-node ONNX graph: y = x + 1 over a dynamic batch."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["y"])],
        "plus_one",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])],
    )
    (tmp_path / "1").mkdir()
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "1/model.onnx"))
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _stand_in())
    module = importlib.import_module("memotion.triton_backend_model")
    model = module.TritonPythonModel()
    config = {
        "input": [{"name": "x"}],
        "output": [{"name": "y"}],
        "parameters": {"intra_op_thread_count": {"string_value": "1"}},
    }
    model.initialize({"model_config": json.dumps(config), "model_repository": str(tmp_path), "model_version": "1"})
    yield model
    sys.modules.pop("memotion.triton_backend_model", None)


def test_grouped_requests_run_as_one_batch_and_each_gets_its_own_rows(backend_model) -> None:
    first, second = np.zeros((1, 2), np.float32), np.arange(6, dtype=np.float32).reshape(3, 2)
    responses = backend_model.execute([_Request(x=first), _Request(x=second)])
    assert [r.error for r in responses] == [None, None]
    np.testing.assert_array_equal(responses[0].output_tensors[0].value, first + 1)
    np.testing.assert_array_equal(responses[1].output_tensors[0].value, second + 1)
    assert responses[1].output_tensors[0].name == "y"


def test_a_failing_batch_answers_every_request_with_an_error(backend_model) -> None:
    wrong_width = np.zeros((1, 5), np.float32)
    responses = backend_model.execute([_Request(x=np.zeros((1, 2), np.float32)), _Request(x=wrong_width)])
    assert len(responses) == 2
    assert all(r.output_tensors == [] and "Error" in str(r.error) for r in responses)


def test_an_unbatched_model_runs_each_request_alone(backend_model, tmp_path: Path) -> None:
    """max_batch_size 0 (a stage model, e.g. OSCAR's detector): one ONNX Runtime run per request."""
    config = {"max_batch_size": 0, "input": [{"name": "x"}], "output": [{"name": "y"}], "parameters": {}}
    backend_model.initialize(
        {"model_config": json.dumps(config), "model_repository": str(tmp_path), "model_version": "1"}
    )
    runs = []
    session_run = backend_model.session.run
    backend_model.session = type(
        "Counted", (), {"run": lambda _, names, feed: runs.append(feed) or session_run(names, feed)}
    )()
    first, second = np.zeros((1, 2), np.float32), np.ones((3, 2), np.float32)
    responses = backend_model.execute([_Request(x=first), _Request(x=second)])
    assert len(runs) == 2 and [r.error for r in responses] == [None, None]
    np.testing.assert_array_equal(responses[1].output_tensors[0].value, second + 1)
