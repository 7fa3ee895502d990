"""Romanised Hindi -> Devanagari."""

from __future__ import annotations

import pytest

from service.text.transliteration import itrans_word, romanised_to_devanagari, word_to_devanagari


@pytest.mark.parametrize(
    "roman, devanagari",
    [
        ("mera dost pagal hai", "मेरा दोस्त पागल है"),
        ("MEHNAT KARO", "मेहनत करो"),
        ("bhai kya baat hai!", "भाई क्या बात है!"),
        ("nahi yaar, 2 baje", "नहीं यार, 2 बजे"),
    ],
)
def test_sentences(roman: str, devanagari: str) -> None:
    assert romanised_to_devanagari(roman) == devanagari


def test_letter_rules_for_words_not_in_the_lexicon() -> None:
    assert itrans_word("sapna") == "sapnA"  # a word-final a after a consonant is long
    assert itrans_word("jeet") == "jIt" and itrans_word("toofan") == "tUfan" and itrans_word("waqt") == "vakt"
    assert word_to_devanagari("sapna") == "सप्ना"
    assert word_to_devanagari("jeet") == "जीत"  # no word-final virama: Hindi drops the final schwa
    assert not word_to_devanagari("dimaag").endswith("\u094d")


def test_english_words_in_code_mixed_text_stay_latin() -> None:
    assert romanised_to_devanagari("office jaana hai") == "office जाना है"
    assert romanised_to_devanagari("office jaana hai", keep_english=False).startswith("ओ")
    assert romanised_to_devanagari("पहले से Devanagari") == "पहले से देवनगरि"
