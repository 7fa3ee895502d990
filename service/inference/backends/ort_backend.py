"""ONNX Runtime backend: one InferenceSession per manifest model, in process."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from memotion.manifest import ServedModel
from service.inference.backends.base import BackendError, model_feed, trimmed_feed

logger = logging.getLogger("memotion.gateway")


def default_providers() -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    providers = ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        providers.insert(0, "CUDAExecutionProvider")
    return providers


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(
        self,
        repository_root: Path,
        models: Sequence[ServedModel],
        *,
        intra_op_threads: int = 0,
        providers: Sequence[str] | None = None,
        allow_spinning: bool = True,
    ) -> None:
        """``allow_spinning``: ONNX Runtime's threads busy-wait for the next run (fast for one
        session used back to back; CPU burnt that concurrent batches or processes need)."""
        import onnxruntime as ort

        self._providers = list(providers) if providers is not None else default_providers()
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._lock = threading.Lock()
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        for model in models:
            path = Path(repository_root) / model.file
            try:
                session = ort.InferenceSession(str(path), sess_options=options, providers=self._providers)
            except Exception as err:
                raise BackendError(f"model {model.name}: onnxruntime cannot load {path}: {err}") from err
            self._check_signature(model, session, path)
            self._sessions[model.name] = session
            logger.info(
                "loaded model %s v%d from %s (%s)", model.name, model.version, path, ", ".join(session.get_providers())
            )

    @staticmethod
    def _check_signature(model: ServedModel, session: object, path: Path) -> None:
        inputs = {i.name for i in session.get_inputs()}  # type: ignore[attr-defined]
        outputs = {o.name for o in session.get_outputs()}  # type: ignore[attr-defined]
        missing_in = [name for name in model.inputs if name not in inputs]
        extra_in = sorted(inputs - set(model.inputs))
        wanted = model.served_outputs()
        missing_out = [name for name in wanted if name not in outputs]
        if missing_in or extra_in or missing_out:
            raise BackendError(
                f"model {model.name} ({path}) does not match the manifest: graph inputs {sorted(inputs)}, "
                f"outputs {sorted(outputs)}; manifest inputs {list(model.inputs)}, outputs {list(model.outputs)}"
            )

    def infer(self, model: ServedModel, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.run(model, self.prepare(model, inputs))

    def prepare(self, model: ServedModel, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The feed of ``model``: its inputs, contiguous and of the graph's dtype (BackendError if one is missing)."""
        if model.name not in self._sessions:
            raise BackendError(f"model {model.name} is not loaded")
        return model_feed(model, inputs)

    def run(self, model: ServedModel, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One ONNX Runtime call on a prepared feed (one request's, or a batch of them merged);
        ``input_ids`` cut to the batch's longest text where the manifest allows it."""
        session = self._sessions.get(model.name)
        if session is None:
            raise BackendError(f"model {model.name} is not loaded")
        names = model.served_outputs()
        results = session.run(names, trimmed_feed(model, feed))
        return {name: np.asarray(value) for name, value in zip(names, results)}

    def serves(self, model: ServedModel) -> bool:
        return model.name in self._sessions

    def ready(self) -> bool:
        return bool(self._sessions)

    def close(self) -> None:
        with self._lock:
            self._sessions.clear()
