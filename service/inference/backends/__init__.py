"""Inference backends and the factory that picks one from the settings."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from memotion.manifest import Manifest, ServedModel
from service.core.errors import GatewayStartupError
from service.core.settings import GatewaySettings
from service.inference.backends.base import BackendError, BackendUnavailable, InferenceBackend

if TYPE_CHECKING:
    from service.inference.backends.openvino_backend import OpenVinoBackend
    from service.inference.backends.ort_backend import OnnxRuntimeBackend

__all__ = ["BackendError", "BackendUnavailable", "InferenceBackend", "create_backend"]
logger = logging.getLogger("memotion.gateway")


def create_backend(
    settings: GatewaySettings,
    manifest: Manifest,
    repository_root: Path,
    models: Sequence[ServedModel] | None = None,
) -> InferenceBackend:
    """The backend ``settings`` ask for, serving ``models`` (default: the ensemble members and their
    stage models; add the repository's OCR models when they are used). The embedded one batches
    every model dynamically, but a stage model (one item per call)."""
    members = manifest.members()
    models = list(models) if models is not None else [*members, *manifest.stage_models(members)]
    if settings.backend == "triton":
        from service.inference.backends.triton_backend import TritonBackend
        from service.inference.backends.triton_endpoint import triton_endpoint, triton_metrics_url

        try:
            # Triton down now is not fatal (the gateway is not ready until it is up); Triton up
            # without a manifest model is (the error names the model).
            protocol, address = triton_endpoint(settings)
            return TritonBackend(
                address,
                models,
                protocol=protocol,
                timeout_s=settings.triton_timeout_s,
                metrics_url=triton_metrics_url(settings),
            )
        except (BackendError, ValueError) as err:
            raise GatewayStartupError(f"model repository {repository_root}: {err}") from err
    try:
        backend = embedded_backend(settings, repository_root, models)
    except BackendError as err:
        raise GatewayStartupError(f"model repository {repository_root}: {err}") from err
    if not settings.batching:
        return backend
    from service.inference.batching import BatchingBackend, repository_policies

    policies = repository_policies(repository_root, models)
    if settings.batch_max_queue_delay_us is not None:
        policies = {
            name: replace(policy, max_queue_delay_us=settings.batch_max_queue_delay_us)
            for name, policy in policies.items()
        }
    return BatchingBackend(backend, models, policies, pad_id=manifest.tokenizer.pad_id)


def embedded_backend(
    settings: GatewaySettings, repository_root: Path, models: Sequence[ServedModel]
) -> OnnxRuntimeBackend | OpenVinoBackend:
    """The in-process engine ``settings.engine`` names, serving ``models`` (BackendError if one cannot load)."""
    threads = ort_intra_op_threads(settings.ort_intra_op_threads, settings.processes)
    if settings.engine == "openvino":
        from service.inference.backends.openvino_backend import OpenVinoBackend

        return OpenVinoBackend(
            repository_root,
            models,
            threads=threads,
            precision=settings.openvino_precision,
            cpu_pinning=settings.openvino_cpu_pinning,
        )
    from service.inference.backends.ort_backend import OnnxRuntimeBackend

    for model in models:
        quantization = getattr(model, "quantization", None)
        if quantization is not None and quantization.engine != "onnxruntime":
            logger.warning(
                "model %s is %s, made for and checked on %s: serving it on onnxruntime (slower, its numbers "
                "not the manifest's); set MEMOTION_ENGINE=%s",
                model.name, quantization.method, quantization.engine, quantization.engine,
            )  # fmt: skip
    # Spinning threads help one session run back to back; with batches (several sessions at
    # once, waits between) or several processes they only burn the CPU the others need.
    spin = not settings.batching and settings.processes == 1
    return OnnxRuntimeBackend(repository_root, models, intra_op_threads=threads, allow_spinning=spin)


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def ort_intra_op_threads(configured: int, processes: int) -> int:
    """ONNX Runtime's threads per session: the setting, or (0) the cores shared out over the gateway
    processes, so that N processes on a node do not each start one thread per core."""
    if configured > 0:
        return configured
    if processes <= 1:
        return 0  # ONNX Runtime's default: one per physical core
    return max(1, usable_cores() // processes)
