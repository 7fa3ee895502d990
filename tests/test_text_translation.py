"""Translation backends and the paper's back-translation, on a real (tiny) CTranslate2 model the test
builds, and the online backend through a fake transport (the web APIs cannot be reached here)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from service.text.processing import TextConfig, TextProcessor, create_translator
from service.text.translation import CTranslate2Translator, OnlineTranslator, TranslationError, translators_transport
from tests.translation_fixtures import PAIRS

ENGLISH = [en for en, _ in PAIRS]
HINDI = [hi for _, hi in PAIRS]


@pytest.fixture(scope="module")
def offline(translation_model_dir: Path) -> CTranslate2Translator:
    return CTranslate2Translator(translation_model_dir)


def test_ctranslate2_translates_both_ways(offline: CTranslate2Translator) -> None:
    assert offline.translate(ENGLISH, "en", "hi") == HINDI
    assert offline.translate(HINDI, "hi", "en") == ENGLISH
    assert offline.translate(["", "  ", "very good"], "en", "hi") == ["", "  ", "बहुत बढ़िया"]


def test_ctranslate2_errors(offline: CTranslate2Translator, translation_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(TranslationError, match="no en-fr model"):
        offline.translate(["x"], "en", "fr")
    with pytest.raises(TranslationError, match="does not exist"):
        CTranslate2Translator(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    shutil.copytree(translation_model_dir, broken)
    (broken / "hi-en" / "target.spm").unlink()
    with pytest.raises(TranslationError, match=r"hi-en lacks \['target.spm'\]"):
        CTranslate2Translator(broken)
    with pytest.raises(TranslationError, match="MEMOTION_TRANSLATOR_MODEL_DIR"):
        create_translator(TextConfig(translator="ctranslate2"))


def _steps(processed) -> list[tuple[str, str]]:
    return [(s.step, s.text) for s in processed.steps]


def test_back_translation_of_each_language(offline: CTranslate2Translator) -> None:
    processor = TextProcessor(TextConfig(translator="ctranslate2"), translator=offline)
    english, hinglish, hindi = processor.process_many(
        ["my friend is crazy\nimgflip.com", "mera dost pagal hai", "यह बकवास है"]
    )

    # English: to Hindi and back (the paper's back-translation).
    assert english.language == "en" and english.text == "my friend is crazy"
    assert _steps(english) == [
        ("input", "my friend is crazy\nimgflip.com"),
        ("clean", "my friend is crazy"),
        ("language", "my friend is crazy"),
        ("translate.en-hi", "मेरा दोस्त पागल है"),
        ("translate.hi-en", "my friend is crazy"),
    ]
    assert english.steps[1].detail == {"removed": ["imgflip.com"]}
    # Romanised Hindi: transliterated to Devanagari (that is its Hindi), then to English.
    assert hinglish.language == "hi-Latn" and hinglish.text == "my friend is crazy"
    assert [s for s, _ in _steps(hinglish)] == ["input", "clean", "language", "transliterate", "translate.hi-en"]
    assert hinglish.steps[3].text == "मेरा दोस्त पागल है"
    # Devanagari Hindi: straight to English.
    assert hindi.language == "hi" and hindi.text == "this is rubbish"
    assert [s for s, _ in _steps(hindi)] == ["input", "clean", "language", "translate.hi-en"]


def test_without_translator_the_cleaned_text_is_used() -> None:
    processor = TextProcessor(TextConfig(translator="none"))
    processed = processor.process("bhai kya scene hai @memes")
    assert processed.text == "bhai kya scene hai" and processed.language == "hi-Latn"
    assert [s.step for s in processed.steps] == ["input", "clean", "language"]
    off = TextProcessor(TextConfig(clean=False, identify_language=False))
    assert off.process("a\nb").text == "a\nb" and off.process("a").language is None


class FakeTransport:
    """Stands in for the translators package's web call: same signature, a dictionary instead."""

    def __init__(self, table: dict[tuple[str, str, str], str], fail: bool = False) -> None:
        self.table = table
        self.fail = fail
        self.calls: list[tuple[str, str, str]] = []

    def __call__(self, text: str, source: str, target: str) -> str:
        self.calls.append((text, source, target))
        if self.fail:
            raise ConnectionError("network unreachable")
        return self.table[(text, source, target)]


def test_online_backend_through_a_fake_transport() -> None:
    transport = FakeTransport(
        {("when the code compiles", "en", "hi"): "जब कोड चलता है", ("जब कोड चलता है", "hi", "en"): "when the code runs"}
    )
    translator = OnlineTranslator("google", transport=transport)
    assert translator.name == "online:google"
    processed = TextProcessor(TextConfig(translator="online"), translator=translator).process("when the code compiles")
    assert processed.text == "when the code runs"
    assert transport.calls == [("when the code compiles", "en", "hi"), ("जब कोड चलता है", "hi", "en")]
    assert processed.steps[-1].detail == {"translator": "online:google"}


def test_translation_failure_keeps_the_text_and_says_why() -> None:
    translator = OnlineTranslator("bing", transport=FakeTransport({}, fail=True))
    processed = TextProcessor(TextConfig(translator="online"), translator=translator).process("hello there friend")
    assert processed.text == "hello there friend"
    assert processed.steps[-1].step == "translate.en-hi"
    assert "network unreachable" in processed.steps[-1].detail["error"]
    with pytest.raises(TranslationError, match="returned int"):
        OnlineTranslator(transport=lambda text, s, t: 42).translate(["x"], "en", "hi")  # type: ignore[arg-type,return-value]


@pytest.mark.skipif(importlib.util.find_spec("translators") is not None, reason="the translators package is installed")
def test_default_transport_says_how_to_install_it() -> None:
    with pytest.raises(TranslationError, match=r"memotion\[translate-online\]"):
        translators_transport()("hello", "en", "hi")
