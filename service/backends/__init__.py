"""Inference backends and the factory that picks one from the settings."""

from __future__ import annotations

from pathlib import Path

from memotion.manifest import Manifest
from service.backends.base import BackendError, BackendUnavailable, InferenceBackend
from service.errors import GatewayStartupError
from service.settings import GatewaySettings

__all__ = ["BackendError", "BackendUnavailable", "InferenceBackend", "create_backend"]


def create_backend(settings: GatewaySettings, manifest: Manifest, repository_root: Path) -> InferenceBackend:
    if settings.backend == "triton":
        from service.backends.triton_backend import TritonBackend

        try:
            # Triton down now is not fatal (the gateway is not ready until it is up); Triton up
            # without a manifest model is (the error names the model).
            protocol, address = settings.triton_endpoint()
            return TritonBackend(address, manifest.members(), protocol=protocol,
                                 timeout_s=settings.triton_timeout_s,
                                 metrics_url=settings.resolved_triton_metrics_url())
        except (BackendError, ValueError) as err:
            raise GatewayStartupError(f"model repository {repository_root}: {err}") from err
    from service.backends.ort_backend import OnnxRuntimeBackend

    try:
        return OnnxRuntimeBackend(repository_root, manifest.members(),
                                  intra_op_threads=settings.ort_intra_op_threads)
    except BackendError as err:
        raise GatewayStartupError(f"model repository {repository_root}: {err}") from err
