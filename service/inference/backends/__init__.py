"""Inference backends and the factory that picks one from the settings."""

from __future__ import annotations

from pathlib import Path

from memotion.manifest import Manifest
from service.core.errors import GatewayStartupError
from service.core.settings import GatewaySettings
from service.inference.backends.base import BackendError, BackendUnavailable, InferenceBackend

__all__ = ["BackendError", "BackendUnavailable", "InferenceBackend", "create_backend"]


def create_backend(settings: GatewaySettings, manifest: Manifest, repository_root: Path) -> InferenceBackend:
    if settings.backend == "triton":
        from service.inference.backends.triton_backend import TritonBackend
        from service.inference.backends.triton_endpoint import triton_endpoint, triton_metrics_url

        try:
            # Triton down now is not fatal (the gateway is not ready until it is up); Triton up
            # without a manifest model is (the error names the model).
            protocol, address = triton_endpoint(settings)
            return TritonBackend(
                address,
                manifest.members(),
                protocol=protocol,
                timeout_s=settings.triton_timeout_s,
                metrics_url=triton_metrics_url(settings),
            )
        except (BackendError, ValueError) as err:
            raise GatewayStartupError(f"model repository {repository_root}: {err}") from err
    from service.inference.backends.ort_backend import OnnxRuntimeBackend

    try:
        return OnnxRuntimeBackend(repository_root, manifest.members(), intra_op_threads=settings.ort_intra_op_threads)
    except BackendError as err:
        raise GatewayStartupError(f"model repository {repository_root}: {err}") from err
