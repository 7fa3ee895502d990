"""``serve(settings)``: run the gateway with uvicorn (what ``memotion serve`` calls).

``MEMOTION_PROCESSES=N`` (N > 1) runs N uvicorn worker processes on one port, each with its own
models, admission and batcher: the way to keep every core of a node busy without Triton. The
workers build the app from the environment (``service.api.app:app_from_env``), so ``serve`` puts
every setting there first; their Prometheus metrics are shared through ``PROMETHEUS_MULTIPROC_DIR``
(a fresh temporary folder unless set) and added up by whichever worker answers ``/metrics``; each
ONNX Runtime session gets cores / N threads (``ort_intra_op_threads`` 0) so the processes do not
oversubscribe the cores.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from pydantic import SecretStr

from memotion.manifest import ManifestError, load_manifest
from service.api.http_timeouts import protocol_factory
from service.core.errors import GatewayStartupError
from service.core.logging_config import configure_logging, uvicorn_log_config
from service.core.metrics import MULTIPROC_ENV
from service.core.settings import GatewaySettings
from service.inference.backends.triton_endpoint import triton_endpoint
from service.store.lifecycle import DATABASE_OFF, open_database

logger = logging.getLogger("memotion.gateway")

EXIT_UNUSABLE_REPOSITORY = 2


def preflight(settings: GatewaySettings) -> None:
    """Cheap checks before starting the server; GatewayStartupError says what is wrong."""
    root = Path(settings.model_repository)
    try:
        load_manifest(root)
    except ManifestError as err:
        raise GatewayStartupError(f"unusable model repository: {err}") from err
    if settings.backend == "triton":
        try:
            protocol, _ = triton_endpoint(settings)
        except ValueError as err:
            raise GatewayStartupError(str(err)) from err
        try:
            importlib.import_module(f"tritonclient.{protocol}")
        except ImportError as err:
            raise GatewayStartupError(
                f"MEMOTION_BACKEND=triton needs tritonclient[{protocol}] (pip install 'memotion[triton]'): {err}"
            ) from err


def serve(settings: GatewaySettings) -> None:
    """Serve until interrupted. Exits with a message and status 2 if the repository or the database
    is unusable (a schema newer than this code, an unreachable server); status 3, uvicorn's, if
    loading the models or OCR fails later during start-up."""
    import uvicorn

    from service.api.app import create_app

    configure_logging(settings.log_level, settings.log_format)
    try:
        preflight(settings)
        if settings.database_url != DATABASE_OFF:
            open_database(settings).close()  # migrate (or check) once, before any worker process starts
    except GatewayStartupError as err:
        print(f"memotion serve: {err}", file=sys.stderr)
        raise SystemExit(EXIT_UNUSABLE_REPOSITORY) from None
    if settings.processes > 1 or os.environ.get(MULTIPROC_ENV):
        prepare_multiprocess_metrics()  # before any metric is made (create_app makes some)
    try:
        app = create_app(settings)  # with several processes: only the check, before any starts
    except ValueError as err:  # an unreadable API key file, duplicate key names
        print(f"memotion serve: {err}", file=sys.stderr)
        raise SystemExit(EXIT_UNUSABLE_REPOSITORY) from None
    target: object = app
    if settings.processes > 1:
        target = "service.api.app:app_from_env"
        os.environ.update(settings_environment(settings))
        for own in Path(os.environ[MULTIPROC_ENV]).glob(f"*_{os.getpid()}.db"):
            own.unlink()  # the supervisor's (from the check above) would add zeros to the sums
        logger.info("starting %d gateway worker processes", settings.processes)
    # SIGTERM: stop accepting, let in-flight requests finish (up to shutdown_grace_s), then unload.
    uvicorn.run(
        target,  # type: ignore[arg-type]
        factory=settings.processes > 1,
        workers=settings.processes if settings.processes > 1 else None,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        # Slow clients: request line + headers within header_timeout_s (408 and closed after; the body's
        # own limit is in the app, service/api/body_limit.py), so none holds a shutdown or a connection.
        http=protocol_factory(settings.header_timeout_s),
        # uvicorn annotates an int but waits with asyncio.wait_for, so fractional seconds work too.
        timeout_graceful_shutdown=settings.shutdown_grace_s,  # type: ignore[arg-type]
        log_config=uvicorn_log_config(settings.log_level, settings.log_format),
    )


def settings_environment(settings: GatewaySettings) -> dict[str, str]:
    """Every setting as its ``MEMOTION_*`` variable (JSON for lists and dicts), so that worker
    processes, which read their settings from the environment, get exactly these."""
    env = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is not None:
            env[f"MEMOTION_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
        secret = getattr(settings, name)
        if isinstance(secret, SecretStr):  # dumped as "**********": the workers need the value itself
            env[f"MEMOTION_{name.upper()}"] = secret.get_secret_value()
    return env


def prepare_multiprocess_metrics() -> Path:
    """The folder where the workers' Prometheus metrics meet: ``PROMETHEUS_MULTIPROC_DIR`` if set
    (emptied: old processes' values must not count), else a new temporary folder."""
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        folder = Path(configured)
        if folder.is_dir():
            for stale in folder.glob("*.db"):
                stale.unlink()
        folder.mkdir(parents=True, exist_ok=True)
    else:
        folder = Path(tempfile.mkdtemp(prefix="memotion-metrics-"))
        os.environ[MULTIPROC_ENV] = str(folder)
        import atexit

        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


if __name__ == "__main__":  # python -m service.server
    serve(GatewaySettings())
