"""The text gate: the gateway only handles valid Unicode.

Python strings can hold what Unicode cannot: a lone surrogate (U+D800..U+DFFF), from a JSON
``"\\ud800"`` escape or a UTF-7 form field. It cannot be encoded as UTF-8, so it would fail wherever
the text is encoded (the result cache's key, the JSON answer) as a 500.

One rule (README "Limits"): text a client sends -- a form or JSON field, a batch item, a scoring
item, an item id, a thresholds name -- that is not valid Unicode is refused with 422 ``invalid_text``
naming the field (never repaired: the client would get an answer for a text it did not send).
Text the gateway reads itself (OCR) has nobody to refuse it to: such a character becomes U+FFFD.
NUL (U+0000) is refused (and repaired) the same way: valid Unicode, but no PostgreSQL text can hold
it, so it would fail where the text is stored (a job's items, the review queue).
"""

from __future__ import annotations

import re

from service.core.errors import ApiError

INVALID_TEXT = "invalid_text"
REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\x00\ud800-\udfff]")  # and NUL, which no database text holds


def unicode_problem(text: str) -> str | None:
    """Why ``text`` is not valid Unicode (the first lone surrogate or NUL and where it is), or None."""
    found = _SURROGATE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return f"a NUL character U+0000 at character {found.start()} is not allowed in text"
    return f"a lone surrogate U+{ord(found.group()):04X} at character {found.start()} is not a character"


def require_unicode(text: str, field: str) -> str:
    """``text`` when it is valid Unicode; else 422 ``invalid_text`` naming ``field``."""
    problem = unicode_problem(text)
    if problem is not None:
        raise ApiError(422, INVALID_TEXT, f"field '{field}' is not valid Unicode ({problem}); send the text as UTF-8")
    return text


def repaired(text: str) -> str:
    """``text`` with every lone surrogate (and NUL) replaced by U+FFFD (for text nobody can be asked to resend)."""
    return _SURROGATE.sub(REPLACEMENT, text)
