"""Triton backend: runs each manifest model on a Triton Inference Server with ``tritonclient``.

gRPC by default, HTTP as an option (``MEMOTION_TRITON_PROTOCOL``). The gateway still tokenizes,
preprocesses and votes; Triton runs the models, its dynamic batcher merging concurrent requests.

Faults: when Triton cannot be reached the backend is not ready and every inference raises
:class:`BackendUnavailable` (the gateway answers 503) until Triton is back -- the gRPC channel
reconnects by itself, at most ``RECONNECT_BACKOFF_MS`` apart. A Triton that answers but does not
serve a manifest model (or serves it with other tensors) is a start-up error naming the model.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from operator import methodcaller
from typing import Any, Literal, TypeVar

import httpx
import numpy as np

from memotion.manifest import ServedModel
from service.inference.backends.base import (
    TOKEN_MULTIPLE,
    BackendError,
    BackendUnavailable,
    model_feed,
    trimmed_feed,
)

logger = logging.getLogger("memotion.gateway")

Protocol = Literal["grpc", "http"]
RECONNECT_BACKOFF_MS = 1000
HEALTH_TIMEOUT_S = 2.0
_INT32_MAX = 2**31 - 1
_GRPC_TRANSPORT_FAILURES = ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.CANCELLED")
T = TypeVar("T")


class TritonModelMismatch(BackendError):
    """Triton answers but does not serve a manifest model as the manifest describes it."""


def _status(err: Exception) -> str:
    status = getattr(err, "status", None)
    return str(status() if callable(status) else status or "")


class TritonBackend:
    name = "triton"

    def __init__(
        self,
        url: str,
        models: Sequence[ServedModel],
        *,
        protocol: Protocol = "grpc",
        timeout_s: float = 30.0,
        metrics_url: str | None = None,
    ) -> None:
        if protocol not in ("grpc", "http"):
            raise BackendError(f"unknown Triton protocol {protocol!r}; use grpc or http")
        self.url = url
        self.protocol: Protocol = protocol
        self.timeout_s = timeout_s
        self.metrics_url = metrics_url
        self.models = list(models)
        self._local = threading.local()  # HTTP clients are per thread (geventhttpclient is not shared)
        self._http_clients: list[Any] = []
        self._grpc_client: Any = None
        self._lock = threading.Lock()
        self._verified = False
        self._closed = False
        self.problem = "not checked yet"
        try:
            self.verify_models()
        except BackendUnavailable as err:
            logger.warning("Triton not reachable at start-up (%s); the gateway is not ready until it is", err)

    # --- clients ---------------------------------------------------------------------------

    def _client(self) -> Any:
        if self._closed:
            raise BackendUnavailable("the Triton backend is closed (the gateway is stopping)")
        if self.protocol == "grpc":
            with self._lock:
                if self._grpc_client is None:
                    import tritonclient.grpc as grpcclient

                    # tritonclient's defaults, plus a short reconnect back-off so that a Triton
                    # that restarts is used again within about a second.
                    self._grpc_client = grpcclient.InferenceServerClient(
                        self.url,
                        channel_args=[
                            ("grpc.max_send_message_length", _INT32_MAX),
                            ("grpc.max_receive_message_length", _INT32_MAX),
                            ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MS // 2),
                            ("grpc.min_reconnect_backoff_ms", RECONNECT_BACKOFF_MS // 2),
                            ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MS),
                        ],
                    )
                return self._grpc_client
        client = getattr(self._local, "client", None)
        if client is None:
            import tritonclient.http as httpclient

            client = httpclient.InferenceServerClient(
                self.url, connection_timeout=HEALTH_TIMEOUT_S, network_timeout=self.timeout_s
            )
            self._local.client = client
            with self._lock:
                self._http_clients.append(client)
        return client

    def _call(self, what: str, call: Callable[[Any], T]) -> T:
        """Run ``call(client)``; transport failures become BackendUnavailable."""
        from tritonclient.utils import InferenceServerException

        client = self._client()
        try:
            return call(client)
        except InferenceServerException as err:
            # gRPC: Triton's own answers carry their status; a transport failure is UNAVAILABLE or
            # DEADLINE_EXCEEDED. HTTP: Triton's answers are InferenceServerExceptions, transport
            # failures are socket/gevent errors (below).
            if self.protocol == "grpc" and _status(err) in _GRPC_TRANSPORT_FAILURES:
                raise BackendUnavailable(self._unreachable(what, err.message() or str(err))) from err
            raise
        except BackendError:
            raise
        except Exception as err:
            if self.protocol != "http":
                raise
            self._local.client = None  # a fresh connection next time (the old one is closed on close())
            raise BackendUnavailable(self._unreachable(what, f"{type(err).__name__}: {err}")) from err

    def _unreachable(self, what: str, detail: str) -> str:
        return f"Triton at {self.protocol}://{self.url} is not reachable ({what}: {detail.strip()[:300]})"

    # --- models ----------------------------------------------------------------------------

    def verify_models(self) -> None:
        """Check Triton serves every model with the manifest's tensors.

        BackendUnavailable if Triton cannot be reached; TritonModelMismatch naming the model if it
        answers but does not serve it (missing from its repository, failed to load) or differs.
        """
        from tritonclient.utils import InferenceServerException

        # Not ready (strict readiness: its own models still loading) is "not yet", not a mismatch.
        if not self._call("health", lambda c: c.is_server_ready(**self._timeout_kw(HEALTH_TIMEOUT_S))):
            raise BackendUnavailable(f"Triton at {self.protocol}://{self.url} is up but not ready (loading models?)")
        for model in self.models:
            version = str(model.version)
            try:
                metadata = self._call(
                    f"metadata of {model.name}",
                    methodcaller("get_model_metadata", model.name, version, **self._timeout_kw(HEALTH_TIMEOUT_S)),
                )
            except InferenceServerException as err:
                raise TritonModelMismatch(
                    f"Triton at {self.protocol}://{self.url} does not serve model {model.name} version "
                    f"{version}, which the manifest names: {err.message() or err}. Is it in Triton's "
                    f"model repository and loaded (tritonserver --load-model={model.name})?"
                ) from err
            if self.protocol == "grpc":
                inputs = [t.name for t in metadata.inputs]
                outputs = [t.name for t in metadata.outputs]
            else:
                inputs = [t["name"] for t in metadata.get("inputs", [])]
                outputs = [t["name"] for t in metadata.get("outputs", [])]
            if sorted(inputs) != sorted(model.inputs) or not set(model.served_outputs()) <= set(outputs):
                raise TritonModelMismatch(
                    f"Triton's model {model.name} version {version} does not match the manifest: inputs "
                    f"{inputs}, outputs {outputs}; manifest inputs {list(model.inputs)}, outputs "
                    f"{model.served_outputs()}"
                )
        self._verified = True

    def _timeout_kw(self, seconds: float) -> dict[str, float]:
        return {"client_timeout": seconds} if self.protocol == "grpc" else {}

    def infer(self, model: ServedModel, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.protocol == "grpc":
            import tritonclient.grpc as client_module
        else:
            import tritonclient.http as client_module
        from tritonclient.utils import InferenceServerException, np_to_triton_dtype

        feed = trimmed_feed(model, model_feed(model, inputs), TOKEN_MULTIPLE)
        tensors = []
        for name in model.inputs:
            array = feed[name]
            tensor = client_module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        names = model.served_outputs()
        outputs = [client_module.InferRequestedOutput(name) for name in names]
        try:
            result = self._call(
                f"inference of {model.name}",
                lambda c: c.infer(
                    model.name,
                    tensors,
                    model_version=str(model.version),
                    outputs=outputs,
                    **self._timeout_kw(self.timeout_s),
                ),
            )
        except InferenceServerException as err:
            # Triton is up but cannot run the model now (not loaded, restarting, failed in execute).
            raise BackendUnavailable(
                f"Triton at {self.protocol}://{self.url} could not run model {model.name} version "
                f"{model.version}: {err.message() or err}"
            ) from err
        return {name: np.asarray(result.as_numpy(name)) for name in names}

    # --- health and metrics ----------------------------------------------------------------

    def ready(self) -> bool:
        """Triton's /v2/health/ready and every model's readiness; ``problem`` says what is wrong."""
        from tritonclient.utils import InferenceServerException

        try:
            if not self._verified:
                self.verify_models()
            elif not self._call("health", lambda c: c.is_server_ready(**self._timeout_kw(HEALTH_TIMEOUT_S))):
                self.problem = f"Triton at {self.protocol}://{self.url} is up but not ready (loading models?)"
                return False
            for model in self.models:
                if not self._call(
                    f"readiness of {model.name}",
                    methodcaller(
                        "is_model_ready", model.name, str(model.version), **self._timeout_kw(HEALTH_TIMEOUT_S)
                    ),
                ):
                    self.problem = (
                        f"Triton at {self.protocol}://{self.url}: model {model.name} "
                        f"version {model.version} is not ready"
                    )
                    return False
        except (BackendError, InferenceServerException) as err:
            self.problem = str(err)
            return False
        self.problem = ""
        return True

    def metrics_text(self) -> str:
        """Triton's own Prometheus metrics (its :8002 endpoint), or "" when there is none."""
        if not self.metrics_url:
            return ""
        try:
            response = httpx.get(self.metrics_url, timeout=HEALTH_TIMEOUT_S)
            response.raise_for_status()
        except httpx.HTTPError as err:
            logger.debug("Triton metrics at %s not available: %s", self.metrics_url, err)
            return ""
        return response.text

    def close(self) -> None:
        self._closed = True
        with self._lock:
            clients = [c for c in [self._grpc_client, *self._http_clients] if c is not None]
            self._grpc_client, self._http_clients = None, []
        for client in clients:
            try:
                client.close()
            except Exception as err:
                logger.debug("closing a Triton client: %s", err)
