"""Decoding what clients put on the wire: base64 images (JSON bodies), JSON thresholds (forms)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from service.core.errors import ApiError

_DATA_URL = re.compile(r"^data:[\w.+/-]*(?:;[\w=.+-]+)*;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


def decode_base64_image(value: str, field: str = "image") -> bytes:
    """Standard or URL-safe base64, optionally as a ``data:image/...;base64,`` URL; 422 if malformed."""
    payload = _WHITESPACE.sub("", _DATA_URL.sub("", value.strip(), count=1))
    if "-" in payload or "_" in payload:
        payload = payload.replace("-", "+").replace("_", "/")
    payload += "=" * (-len(payload) % 4) if len(payload) % 4 != 1 else ""
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ApiError(
            422,
            "invalid_base64",
            f"field '{field}' is not valid base64 ({err}); send the image file's bytes base64-encoded "
            "(optionally as a data:image/...;base64, URL)",
        ) from err


def parse_thresholds_field(value: Any) -> dict[str, float] | None:
    """A form field holding a JSON object of thresholds (``{"offensive": 0.3}``)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise ApiError(422, "invalid_request", "field 'thresholds' must be a JSON object as text, not a file")
    try:
        parsed = json.loads(value)
    except ValueError as err:
        raise ApiError(
            422, "invalid_thresholds", f"field 'thresholds' is not JSON ({err}); send e.g. {{\"offensive\": 0.3}}"
        ) from err
    if not isinstance(parsed, dict):
        raise ApiError(422, "invalid_thresholds", "field 'thresholds' must be a JSON object, e.g. {\"offensive\": 0.3}")
    return parsed
