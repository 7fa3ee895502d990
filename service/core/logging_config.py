"""Log set-up for the gateway's own loggers (``memotion.*``) and uvicorn's.

``json`` (the default): one JSON object per line, with the fields a log pipeline filters on
(``request_id``, ``status``, ``client``, ...). Request and response bodies are never logged, and no
field can carry more than :data:`MAX_FIELD_CHARS` characters, so image bytes cannot end up in logs.
A traceback gets :data:`MAX_EXCEPTION_CHARS`, cut in the middle: its first frames and its last lines
(the exception itself) are always kept. Python warnings go through the same log, each distinct one
once (:func:`capture_warnings`).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

_HANDLER_MARK = "_memotion_gateway_handler"
MAX_FIELD_CHARS = 2000
MAX_EXCEPTION_CHARS = 16000
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


def _cut_middle(text: str, keep: int, what: str) -> str:
    if len(text) <= keep:
        return text
    head = keep // 3
    return f"{text[:head]}...[{len(text) - keep} characters of {what} cut]...{text[len(text) - (keep - head) :]}"


def bounded_traceback(text: str, limit: int = MAX_EXCEPTION_CHARS) -> str:
    """``text`` cut in the middle when longer than ``limit``: its last line (the exception, what an
    operator needs most; itself cut in the middle if huge), the first frames and the innermost ones stay."""
    if len(text) <= limit:
        return text
    frames, _, last = text.rstrip("\n").rpartition("\n")
    last = _cut_middle(last, limit // 2, "the exception message")
    return _cut_middle(frames, limit - len(last) - 1, "traceback") + "\n" + last


class OnceFilter(logging.Filter):
    """Lets each distinct (logger, level, message) through once: a warning repeated per model or per
    request is logged the first time only. Remembers at most ``limit`` messages."""

    def __init__(self, limit: int = 1000) -> None:
        super().__init__()
        self.limit = limit
        self._seen: set[tuple[str, int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, record.getMessage()[:500])
        if key in self._seen:
            return False
        if len(self._seen) < self.limit:
            self._seen.add(key)
        return True


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
            body["exception"] = bounded_traceback(self.formatException(record.exc_info))
        return json.dumps(body, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatException(self, ei: Any) -> str:
        return bounded_traceback(super().formatException(ei))


def _formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    return TextFormatter()


def capture_warnings(handler: logging.Handler | None = None) -> None:
    """Python warnings (torch's deprecations, ...) into the ``py.warnings`` logger, through ``handler``
    (one formatted line each, JSON too), each distinct warning once per process."""
    logging.captureWarnings(True)
    target = logging.getLogger("py.warnings")
    target.propagate = handler is None
    if handler is not None and handler not in target.handlers:
        target.handlers = [h for h in target.handlers if not getattr(h, _HANDLER_MARK, False)]
        target.addHandler(handler)
    if not any(isinstance(f, OnceFilter) for f in target.filters):
        target.addFilter(OnceFilter())


def quiet_console(level: int = logging.WARNING) -> None:
    """For the command line (demo, classify): library messages on the root logger and warnings as
    one plain stderr line each, every distinct one once (open_clip's "No pretrained weights loaded"
    for each tiny model, torch's deprecation warnings)."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, _HANDLER_MARK, False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.addFilter(OnceFilter())
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    root.setLevel(level)
    capture_warnings(handler)


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
    capture_warnings(handler)


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
