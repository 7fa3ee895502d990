"""OCR text cleaning: line joins, URL / handle / watermark removal, normalisation."""

from __future__ import annotations

from service.text.cleaning import clean_ocr_text, join_lines


def test_lines_are_joined_and_hyphenated_words_rejoined() -> None:
    assert join_lines("WHEN THE CODE\nFINALLY COMPI-\nLES\r\n  ") == "WHEN THE CODE FINALLY COMPILES"
    assert clean_ocr_text("top line\n\n\nbottom   line").text == "top line bottom line"


def test_urls_handles_and_watermarks_are_removed_and_reported() -> None:
    cleaned = clean_ocr_text("ME AT WORK imgflip.com\nsee https://example.org/x?y=1 and www.memes.in @dank_memes_daily")
    assert cleaned.text == "ME AT WORK see and"
    assert set(cleaned.removed) == {"imgflip.com", "https://example.org/x?y=1", "www.memes.in", "@dank_memes_daily"}
    assert clean_ocr_text("Made with Mematic when bhai says yes").text == "when bhai says yes"
    assert clean_ocr_text("9GAG funny stuff 9gag.com").text == "funny stuff"


def test_ordinary_text_is_left_alone() -> None:
    for text in (
        "when the tests pass on the first try",
        "I love e-mail",
        "DM me, 100% real",
        "company.",
        "मेरा दोस्त पागल है",
    ):
        cleaned = clean_ocr_text(text)
        assert cleaned.text == text and cleaned.removed == []


def test_invisible_characters_and_ocr_debris() -> None:
    text = "ZERO\u200bWIDTH | split _ word \ufeff\x07bell"
    assert clean_ocr_text(text).text == "ZEROWIDTH split word bell"
    # ZWJ / ZWNJ choose Devanagari conjunct forms: they stay.
    assert clean_ocr_text("क्\u200dष").text == "क्\u200dष"


def test_extra_watermark_patterns() -> None:
    cleaned = clean_ocr_text("SUNDAY MOOD by MemeLord Studio", extra_watermarks=[r"by\s+memelord\s+studio"])
    assert cleaned.text == "SUNDAY MOOD" and cleaned.removed == ["by MemeLord Studio"]
