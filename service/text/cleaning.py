"""OCR text cleaning: join broken lines, drop URLs, social handles and meme-site watermarks.

Pure functions. The result keeps what was removed, so ``?explain=true`` can show it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

# Watermarks meme generators and aggregator sites stamp on images (matched case-insensitively,
# as whole words). Extra patterns come from the ``MEMOTION_TEXT_WATERMARKS`` setting.
DEFAULT_WATERMARKS: tuple[str, ...] = (
    r"made\s+(?:with|by|using)\s+mematic",
    r"imgflip(?:\s*\.\s*com)?",
    r"mematic",
    r"ifunny(?:\s*\.\s*co)?",
    r"9gag(?:\s*\.\s*com)?",
    r"memegenerator(?:\s*\.\s*net)?",
    r"quickmeme(?:\s*\.\s*com)?",
    r"memecenter(?:\s*\.\s*com)?",
    r"memedroid(?:\s*\.\s*com)?",
    r"cheezburger(?:\s*\.\s*com)?",
    r"makeameme(?:\s*\.\s*org)?",
)

# A bare domain only starts where a token starts (not after a word character, dot or hyphen), so the
# regex engine tries it once per token, not at every character: linear time on any text (the older
# ``\b[\w-]+(?:\.[\w-]+)*\.tld`` retried at each of 2000 characters of "a.a.a..." took a second).
_URL = re.compile(
    r"(?:\bhttps?://|\bwww\.)\S+"  # explicit URLs
    r"|(?<![\w.-])[\w-]+(?:\.[\w-]+)*\.(?:com|net|org|in|co|io|me|ly|gg|tv|app|info)(?:/\S*)?\b",  # bare domains
    re.IGNORECASE,
)
_HANDLE = re.compile(r"(?<![\w@])@[A-Za-z0-9_.]{2,30}")
# Characters that only make trouble: zero-width space / no-break, BOM, soft hyphen, word joiner.
# ZWJ and ZWNJ stay: Devanagari uses them to pick conjunct forms.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u2060\ufeff\u00ad"), None)
_HYPHEN_BREAK = re.compile(r"(\w)-\s*\n\s*(\w)")
_LONE_SYMBOLS = re.compile(r"(?<!\S)[|_~^`¦•·=+*#<>\\/]+(?!\S)")


@dataclass(frozen=True)
class CleanedText:
    text: str
    removed: list[str] = field(default_factory=list)  # URLs, handles and watermarks taken out


def _compile_watermarks(patterns: Sequence[str]) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)(?:" + "|".join(f"(?:{p})" for p in patterns) + r")(?!\w)", re.IGNORECASE)


_DEFAULT_WATERMARK_RE = _compile_watermarks(DEFAULT_WATERMARKS)


def join_lines(text: str) -> str:
    """One line: a word hyphenated across a line break is rejoined, other breaks become spaces."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _HYPHEN_BREAK.sub(r"\1\2", text)
    return " ".join(text.split())


def clean_ocr_text(text: str, extra_watermarks: Sequence[str] = ()) -> CleanedText:
    """Normalise (NFC, no control or zero-width characters), join lines, remove URLs, @handles,
    watermarks and lone OCR symbols (``|``, ``_``, ...), collapse whitespace."""
    removed: list[str] = []
    text = unicodedata.normalize("NFC", text).translate(_INVISIBLE)
    text = "".join(ch if unicodedata.category(ch)[0] != "C" or ch in "\n\t\u200c\u200d" else " " for ch in text)
    text = join_lines(text)
    watermarks = (
        _compile_watermarks([*DEFAULT_WATERMARKS, *extra_watermarks]) if extra_watermarks else _DEFAULT_WATERMARK_RE
    )
    for pattern in (_URL, _HANDLE, watermarks):
        removed.extend(m.group(0) for m in pattern.finditer(text))
        text = pattern.sub(" ", text)
    text = _LONE_SYMBOLS.sub(" ", text)
    return CleanedText(" ".join(text.split()), removed)
