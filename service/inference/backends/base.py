"""The inference backend protocol: run one manifest model on named input tensors.

The pipeline only knows manifest ``ServedModel`` objects and tensor names from the manifest; how a
backend finds a model (ONNX file, Triton model name and version) is its own business.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import numpy as np

from memotion.manifest import ServedModel


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
