"""Log set-up for the gateway's own loggers (``memotion.*``); uvicorn configures its own."""

from __future__ import annotations

import logging
import sys

_HANDLER_MARK = "_memotion_gateway_handler"


def configure_logging(level: str = "info") -> None:
    """One stderr handler on the ``memotion`` logger (idempotent)."""
    logger = logging.getLogger("memotion")
    logger.setLevel(level.upper())
    if any(getattr(h, _HANDLER_MARK, False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    setattr(handler, _HANDLER_MARK, True)
    logger.addHandler(handler)
    logger.propagate = False
