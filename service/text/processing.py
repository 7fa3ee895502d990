"""The text path, step by step: clean -> identify the language -> (transliterate) -> back-translate.

What the models read is the cleaned text, or, when a translator is configured, its back-translation
to English. Every step that ran is recorded with the text after it (``?explain=true`` shows them).
A translation failure never fails the classification: the step records the error and the
untranslated text is used.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from service.text.cleaning import clean_ocr_text
from service.text.language import LanguageGuess, LanguageIdentifier
from service.text.translation import CTranslate2Translator, OnlineTranslator, TranslationError, Translator
from service.text.transliteration import romanised_to_devanagari

if TYPE_CHECKING:
    from service.core.settings import GatewaySettings

logger = logging.getLogger("memotion.gateway")

TranslatorKind = Literal["none", "online", "ctranslate2"]


@dataclass(frozen=True)
class TextStep:
    step: str  # input, clean, language, transliterate, translate.en-hi, translate.hi-en
    text: str  # the text after this step
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProcessedText:
    text: str  # what the models read
    language: str | None  # en, hi, hi-Latn, other, unknown; None when identification is off
    steps: list[TextStep]


@dataclass(frozen=True)
class TextConfig:
    clean: bool = True
    identify_language: bool = True
    transliterate: bool = True
    translator: TranslatorKind = "none"
    translator_model_dir: Path | None = None  # ctranslate2: folder with en-hi/ and hi-en/
    translator_provider: str = "google"  # online: a translators-package provider
    translator_timeout_s: float = 10.0
    translator_threads: int = 1
    extra_watermarks: tuple[str, ...] = ()


def create_translator(config: TextConfig) -> Translator | None:
    if config.translator == "none":
        return None
    if config.translator == "online":
        return OnlineTranslator(config.translator_provider, config.translator_timeout_s)
    if config.translator_model_dir is None:
        raise TranslationError(
            "MEMOTION_TRANSLATOR=ctranslate2 needs MEMOTION_TRANSLATOR_MODEL_DIR "
            "(a folder with en-hi/ and hi-en/ CTranslate2 models)"
        )
    return CTranslate2Translator(config.translator_model_dir, threads=config.translator_threads)


class TextProcessor:
    def __init__(
        self,
        config: TextConfig,
        *,
        identifier: LanguageIdentifier | None = None,
        translator: Translator | None = None,
    ) -> None:
        self.config = config
        needs_language = config.identify_language or config.translator != "none"
        self.identifier = identifier or (LanguageIdentifier() if needs_language else None)
        self.translator = translator if translator is not None else create_translator(config)

    def describe(self) -> dict[str, Any]:
        return {
            "clean": self.config.clean,
            "language_id": self.identifier.name if self.identifier else None,
            "transliterate": self.config.transliterate,
            "translator": self.translator.name if self.translator else "none",
        }

    def close(self) -> None:
        if self.translator is not None:
            self.translator.close()

    def process(self, text: str) -> ProcessedText:
        return self.process_many([text])[0]

    def process_many(self, texts: Sequence[str]) -> list[ProcessedText]:
        steps: list[list[TextStep]] = [[TextStep("input", t)] for t in texts]
        current = list(texts)
        if self.config.clean:
            for i, text in enumerate(current):
                cleaned = clean_ocr_text(text, self.config.extra_watermarks)
                current[i] = cleaned.text
                steps[i].append(
                    TextStep("clean", cleaned.text, {"removed": cleaned.removed} if cleaned.removed else {})
                )
        guesses: list[LanguageGuess | None] = [None] * len(current)
        if self.identifier is not None:
            for i, text in enumerate(current):
                guess = self.identifier.identify(text)
                guesses[i] = guess
                steps[i].append(
                    TextStep(
                        "language",
                        text,
                        {
                            "language": guess.language,
                            "confidence": round(guess.confidence, 3),
                            "script": guess.script,
                            **guess.detail,
                        },
                    )
                )
        final = list(current)
        if self.translator is not None:
            final = self._back_translate(current, guesses, steps)
        return [
            ProcessedText(final[i], guesses[i].language if guesses[i] is not None else None, steps[i])  # type: ignore[union-attr]
            for i in range(len(texts))
        ]

    def _back_translate(
        self,
        texts: list[str],
        guesses: list[LanguageGuess | None],
        steps: list[list[TextStep]],
    ) -> list[str]:
        """Hindi first (English is translated to it, romanised Hindi transliterated, Devanagari kept),
        then Hindi -> English. Text identified as neither (other, unknown, empty) is left alone."""
        assert self.translator is not None
        hindi: dict[int, str] = {}
        to_translate: list[int] = []
        for i, (text, guess) in enumerate(zip(texts, guesses)):
            language = guess.language if guess is not None else "en"
            if not text.strip() or language in ("other", "unknown"):
                continue
            if language == "hi":
                hindi[i] = text
            elif language == "hi-Latn" and self.config.transliterate:
                hindi[i] = romanised_to_devanagari(text)
                steps[i].append(TextStep("transliterate", hindi[i]))
            else:
                to_translate.append(i)
        out = list(texts)
        if to_translate:
            try:
                translated = self.translator.translate([texts[i] for i in to_translate], "en", "hi")
            except TranslationError as err:
                logger.warning("translation en->hi failed: %s", err)
                for i in to_translate:
                    steps[i].append(TextStep("translate.en-hi", texts[i], {"error": str(err)}))
            else:
                for i, text in zip(to_translate, translated):
                    hindi[i] = text
                    steps[i].append(TextStep("translate.en-hi", text, {"translator": self.translator.name}))
        if hindi:
            order = sorted(hindi)
            try:
                english = self.translator.translate([hindi[i] for i in order], "hi", "en")
            except TranslationError as err:
                logger.warning("translation hi->en failed: %s", err)
                for i in order:
                    steps[i].append(TextStep("translate.hi-en", texts[i], {"error": str(err)}))
            else:
                for i, text in zip(order, english):
                    out[i] = text
                    steps[i].append(TextStep("translate.hi-en", text, {"translator": self.translator.name}))
        return out


def text_config_from_settings(settings: GatewaySettings) -> TextConfig:
    """The text-path part of the gateway settings."""
    return TextConfig(
        clean=settings.text_clean,
        identify_language=settings.language_id,
        transliterate=settings.transliterate,
        translator=settings.translator,
        translator_model_dir=settings.translator_model_dir,
        translator_provider=settings.translator_provider,
        translator_timeout_s=settings.translator_timeout_s,
        translator_threads=settings.translator_threads,
        extra_watermarks=tuple(settings.text_watermarks),
    )
