"""Decoding what clients put on the wire: base64 images (JSON bodies), JSON thresholds (forms).

:data:`Thresholds` is the one type of a ``thresholds`` value, in a JSON body, a batch and a form field
alike: an object of numbers (``true`` or ``"0.3"`` are refused everywhere, ranges are checked by
``service.inference.thresholds``). Every malformed value is an :class:`ApiError` 422, never a 500.
:data:`UnicodeText` is a body's string field that must be valid Unicode (the text gate).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from service.core.errors import ApiError, validation_message
from service.text.unicode_gate import INVALID_TEXT, unicode_problem


def _valid_unicode(value: str) -> str:
    problem = unicode_problem(value)
    if problem is not None:
        raise PydanticCustomError(
            INVALID_TEXT, "not valid Unicode ({problem}); send the text as UTF-8", {"problem": problem}
        )
    return value


# A string field of a request body: the text gate (service/text/unicode_gate.py) as a validation
# error naming the field, code ``invalid_text``.
UnicodeText = Annotated[str, AfterValidator(_valid_unicode)]
Thresholds = dict[UnicodeText, Annotated[float, Field(strict=True)]]
_THRESHOLDS = TypeAdapter(Thresholds)
THRESHOLDS_HINT = 'send a JSON object of numbers in [0, 1], e.g. {"offensive": 0.3}'

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
    """A form field holding a JSON object of thresholds (``{"offensive": 0.3}``), validated exactly as
    the JSON body's ``thresholds`` (any nesting depth, any type: a 422 naming the problem)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise ApiError(422, "invalid_request", "field 'thresholds' must be a JSON object as text, not a file")
    try:
        return _THRESHOLDS.validate_json(value)
    except ValidationError as err:
        errors = err.errors(include_url=False)
        if any(e.get("type") == "json_invalid" for e in errors):
            reason = "; ".join(str(e.get("msg")) for e in errors)
            raise ApiError(
                422, "invalid_thresholds", f"field 'thresholds' is not JSON ({reason}); {THRESHOLDS_HINT}"
            ) from err
        _, message = validation_message([{**e, "loc": ("thresholds", *e.get("loc", ()))} for e in errors], hint="")
        raise ApiError(422, "invalid_thresholds", f"{message}; {THRESHOLDS_HINT}") from err
    except (ValueError, RecursionError) as err:
        raise ApiError(422, "invalid_thresholds", f"field 'thresholds' is not usable JSON; {THRESHOLDS_HINT}") from err
