"""The inference backend protocol: run one manifest model on named input tensors.

The pipeline only knows manifest ``ServedModel`` objects and tensor names from the manifest; how a
backend finds a model (ONNX file, Triton model name and version) is its own business.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import numpy as np

from memotion.manifest import ModelEntry, ServedModel
from memotion.tokenizer import trim_token_ids


class BackendError(RuntimeError):
    """A backend cannot load or run a model."""


class BackendUnavailable(BackendError):
    """The backend cannot be reached now (a remote server down or restarting): retry later (503)."""


@runtime_checkable
class InferenceBackend(Protocol):
    name: str

    def infer(self, model: ServedModel, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run ``model`` on the tensors it names in ``model.inputs`` (others in ``inputs`` are ignored).

        Returns one array per name in ``model.outputs``, keyed by that name.
        """
        ...

    def ready(self) -> bool:
        """True when every model can be run now."""
        ...

    def close(self) -> None:
        """Release sessions / connections; ``ready()`` is False afterwards."""
        ...


# input_ids of a model with a dynamic token axis are cut to the longest text rounded up to this
# many tokens where a few lengths (16, 32, ..., the context length) pay: Triton's dynamic batcher
# merges only requests of the same shape, and OpenVINO prepares its kernels for every new shape
# (about 100 ms a shape for CLIP-multi at ViT-B; cached after).
TOKEN_MULTIPLE = 16

# The dtype each model input is sent in (the exported graphs'); any other input keeps its own.
INPUT_DTYPES = {"input_ids": np.int64, "pixel_values": np.float32, "bert_input_ids": np.int64, "text": object}


def model_feed(model: ServedModel, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``model``'s inputs from ``inputs``, contiguous and of the graph's dtype (BackendError if one is missing)."""
    feed: dict[str, np.ndarray] = {}
    for name in model.inputs:
        if name not in inputs:
            raise BackendError(f"model {model.name} needs input {name!r}, which was not computed")
        feed[name] = np.ascontiguousarray(inputs[name], dtype=INPUT_DTYPES.get(name))
    return feed


def trimmed_feed(model: ServedModel, feed: Mapping[str, np.ndarray], multiple: int = 1) -> dict[str, np.ndarray]:
    """``feed`` with ``input_ids`` cut to the batch's longest text (rounded up to ``multiple``
    tokens) when the manifest says the model gives the same logits so (``token_trimming``); else as is."""
    trimming = model.token_trimming if isinstance(model, ModelEntry) else None
    if trimming is None or trimming.input not in feed:
        return dict(feed)
    return {**feed, trimming.input: np.ascontiguousarray(trim_token_ids(feed[trimming.input], multiple))}
