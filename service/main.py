"""``serve(settings)``: run the gateway with uvicorn (what ``memotion serve`` calls)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from memotion.manifest import ManifestError, load_manifest
from service.errors import GatewayStartupError
from service.logging_config import configure_logging
from service.settings import GatewaySettings

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
        raise GatewayStartupError(
            "MEMOTION_BACKEND=triton is not implemented yet; use MEMOTION_BACKEND=onnxruntime (the default)"
        )


def serve(settings: GatewaySettings) -> None:
    """Serve until interrupted. Exits with a message and status 2 if the repository is unusable
    (status 3, uvicorn's, if loading the models or OCR fails later during start-up)."""
    import uvicorn

    from service.app import create_app

    configure_logging(settings.log_level)
    try:
        preflight(settings)
    except GatewayStartupError as err:
        print(f"memotion serve: {err}", file=sys.stderr)
        raise SystemExit(EXIT_UNUSABLE_REPOSITORY) from None
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level,
        access_log=False, timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":  # python -m service.main
    serve(GatewaySettings())
