"""``serve(settings)``: run the gateway with uvicorn (what ``memotion serve`` calls)."""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

from memotion.manifest import ManifestError, load_manifest
from service.core.errors import GatewayStartupError
from service.core.logging_config import configure_logging, uvicorn_log_config
from service.core.settings import GatewaySettings
from service.inference.backends.triton_endpoint import triton_endpoint

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
    """Serve until interrupted. Exits with a message and status 2 if the repository is unusable
    (status 3, uvicorn's, if loading the models or OCR fails later during start-up)."""
    import uvicorn

    from service.api.app import create_app

    configure_logging(settings.log_level, settings.log_format)
    try:
        preflight(settings)
    except GatewayStartupError as err:
        print(f"memotion serve: {err}", file=sys.stderr)
        raise SystemExit(EXIT_UNUSABLE_REPOSITORY) from None
    try:
        app = create_app(settings)
    except ValueError as err:  # an unreadable API key file, duplicate key names
        print(f"memotion serve: {err}", file=sys.stderr)
        raise SystemExit(EXIT_UNUSABLE_REPOSITORY) from None
    # SIGTERM: stop accepting, let in-flight requests finish (up to shutdown_grace_s), then unload.
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=settings.shutdown_grace_s,
        log_config=uvicorn_log_config(settings.log_level, settings.log_format),
    )


if __name__ == "__main__":  # python -m service.server
    serve(GatewaySettings())
