"""Romanised Hindi -> Devanagari.

Casual romanisation (``bhai kya scene hai``) is not a scheme: frequent words are looked up in
:data:`~service.text.lexicon.ROMAN_TO_DEVANAGARI`; other Hindi words are mapped letter by letter with
``indic-transliteration`` (ITRANS) after rewriting the casual spellings into ITRANS (``ee`` -> ``I``,
word-final ``a`` -> ``A``) and dropping the word-final virama (Hindi deletes the final schwa).
Common English words in code-mixed text stay in Latin letters.
"""

from __future__ import annotations

import re

from service.text.lexicon import ENGLISH_WORDS, ROMAN_HINDI_WORDS, ROMAN_TO_DEVANAGARI

_TOKEN = re.compile(r"[A-Za-z]+|[^A-Za-z]+")
_VIRAMA = "\u094d"
# Casual spelling -> ITRANS, applied in this order to a lower-cased word.
_CASUAL_TO_ITRANS: tuple[tuple[str, str], ...] = (
    ("ee", "I"),
    ("oo", "U"),
    ("aa", "A"),
    ("w", "v"),
    ("z", "j"),
    ("q", "k"),
    ("x", "ks"),
)
_CONSONANT_BEFORE_FINAL_A = re.compile(r"(?<=[bcdfghjklmnpqrstvwxyz])a$")


def itrans_word(word: str) -> str:
    """A casual romanised Hindi word in ITRANS (lower case in, ITRANS out)."""
    word = word.lower()
    if len(word) > 2:
        word = _CONSONANT_BEFORE_FINAL_A.sub("aa", word)  # "kya", "mera": the final a is long
    for casual, itrans in _CASUAL_TO_ITRANS:
        word = word.replace(casual, itrans)
    return word


def word_to_devanagari(word: str) -> str:
    from indic_transliteration import sanscript

    known = ROMAN_TO_DEVANAGARI.get(word.lower())
    if known is not None:
        return known
    devanagari = sanscript.transliterate(itrans_word(word), sanscript.ITRANS, sanscript.DEVANAGARI)
    return devanagari[:-1] if devanagari.endswith(_VIRAMA) else devanagari


def romanised_to_devanagari(text: str, keep_english: bool = True) -> str:
    """Transliterate the Hindi words of ``text`` to Devanagari; with ``keep_english`` common English
    words (that are not also Hindi words) stay as they are, as do digits and punctuation."""
    out = []
    for token in _TOKEN.findall(text):
        lower = token.lower()
        english = keep_english and lower in ENGLISH_WORDS and lower not in ROMAN_HINDI_WORDS
        if not token.isascii() or not token.isalpha() or english:
            out.append(token)
        else:
            out.append(word_to_devanagari(token))
    return "".join(out)
