"""Log set-up for the gateway's own loggers (``memotion.*``) and uvicorn's.

``json`` (the default): one JSON object per line, with the fields a log pipeline filters on
(``request_id``, ``status``, ``client``, ...). Request and response bodies are never logged, and no
field can carry more than :data:`MAX_FIELD_CHARS` characters, so image bytes cannot end up in logs.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

_HANDLER_MARK = "_memotion_gateway_handler"
MAX_FIELD_CHARS = 2000
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "color_message",
}


def _bounded(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
        return value[:MAX_FIELD_CHARS] + f"...[{len(value) - MAX_FIELD_CHARS} more characters cut]"
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    return value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": _bounded(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                body[key] = _bounded(value)
        if record.exc_info:
            body["exception"] = _bounded(self.formatException(record.exc_info))
        return json.dumps(body, ensure_ascii=False, default=str)


def _formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    return logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


def configure_logging(level: str = "info", log_format: str = "json") -> None:
    """One stderr handler on the ``memotion`` logger (idempotent; the format is updated)."""
    logger = logging.getLogger("memotion")
    logger.setLevel(level.upper())
    logger.propagate = False
    for handler in logger.handlers:
        if getattr(handler, _HANDLER_MARK, False):
            handler.setFormatter(_formatter(log_format))
            return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter(log_format))
    setattr(handler, _HANDLER_MARK, True)
    logger.addHandler(handler)


def uvicorn_log_config(level: str = "info", log_format: str = "json") -> dict[str, Any]:
    """``uvicorn.run(log_config=...)``: uvicorn's own messages in the same format (its access log is
    off; the gateway writes its own)."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"}
        if log_format == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"gateway": formatter},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "gateway", "stream": "ext://sys.stderr"}
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }
