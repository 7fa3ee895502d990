"""The Triton python-backend model memotion writes into every model version (as model.py): runs
model.onnx of this version with ONNX Runtime on the CPU. A model with max_batch_size 0 (a stage
model: one item per call, no batch axis) runs each request alone. The GPU configs (configs/*.pbtxt) use Triton's native
onnxruntime backend on the same model.onnx instead."""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


def _text(array):
    """A string tensor (Triton BYTES: bytes objects) as the str objects ONNX Runtime takes."""
    if array.dtype != object:
        return array
    return np.array([v.decode("utf-8") if isinstance(v, bytes) else v for v in array.ravel()], dtype=object).reshape(
        array.shape
    )


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(parameters.get("intra_op_thread_count", "0"))
        options.log_severity_level = 3
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
        self.inputs = [tensor["name"] for tensor in config["input"]]
        self.outputs = [tensor["name"] for tensor in config["output"]]
        self.batched = int(config.get("max_batch_size", 1)) > 0

    def _run(self, feeds):
        """The outputs per request: the requests as one batch, or (unbatched) each alone."""
        if not self.batched:
            return [self.session.run(self.outputs, dict(zip(self.inputs, tensors))) for tensors in feeds]
        sizes = [tensors[0].shape[0] for tensors in feeds]
        batch = {name: np.concatenate([tensors[i] for tensors in feeds]) for i, name in enumerate(self.inputs)}
        results = self.session.run(self.outputs, batch)
        bounds = np.cumsum([0, *sizes])
        return [[value[bounds[i] : bounds[i + 1]] for value in results] for i in range(len(sizes))]

    def execute(self, requests):
        try:
            feeds = [
                [_text(pb_utils.get_input_tensor_by_name(r, name).as_numpy()) for name in self.inputs] for r in requests
            ]
            results = self._run(feeds)
        except Exception as err:  # every request of the batch gets the error
            error = pb_utils.TritonError(f"{type(err).__name__}: {err}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        return [
            pb_utils.InferenceResponse(
                output_tensors=[
                    pb_utils.Tensor(name, np.ascontiguousarray(value)) for name, value in zip(self.outputs, values)
                ]
            )
            for values in results
        ]
