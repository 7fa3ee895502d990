"""Inference backends and the factory that picks one from the settings."""

from __future__ import annotations

from pathlib import Path

from memotion.manifest import Manifest
from service.backends.base import BackendError, InferenceBackend
from service.errors import GatewayStartupError
from service.settings import GatewaySettings

__all__ = ["BackendError", "InferenceBackend", "create_backend"]


def create_backend(settings: GatewaySettings, manifest: Manifest, repository_root: Path) -> InferenceBackend:
    if settings.backend == "triton":
        raise GatewayStartupError(
            "MEMOTION_BACKEND=triton is not implemented yet; use MEMOTION_BACKEND=onnxruntime "
            "(the default)"
        )
    from service.backends.ort_backend import OnnxRuntimeBackend

    try:
        return OnnxRuntimeBackend(repository_root, manifest.members(),
                                  intra_op_threads=settings.ort_intra_op_threads)
    except BackendError as err:
        raise GatewayStartupError(f"model repository {repository_root}: {err}") from err
