"""Machine translation behind one interface, and the paper's back-translation (to Hindi and back
to English; Yu & Kolossa used the ``translators`` package for it).

Backends:

* :class:`OnlineTranslator`: the ``translators`` package (Google, Bing, ... web APIs) through a
  *transport* function; the default transport calls ``translators.translate_text``.
* :class:`CTranslate2Translator`: offline; a folder with one CTranslate2 model per direction
  (``en-hi/`` and ``hi-en/``), each holding the converted model (``model.bin``, vocabulary) and its
  SentencePiece models ``source.spm`` / ``target.spm``. That is what ``ct2-transformers-converter``
  makes of a Marian (OPUS-MT) model, plus the two ``.spm`` files copied from the original.

``MEMOTION_TRANSLATOR=none`` switches translation off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

logger = logging.getLogger("memotion.gateway")

BACK_TRANSLATION_DIRECTIONS = (("en", "hi"), ("hi", "en"))


class TranslationError(RuntimeError):
    """A translator failed (network, model); the text path then keeps the untranslated text."""


@runtime_checkable
class Translator(Protocol):
    name: str

    def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        """Translate each text from ``source`` to ``target`` (ISO 639-1 codes; ``source`` may be
        ``auto`` where the backend detects it). Raises :class:`TranslationError`."""
        ...

    def close(self) -> None: ...


# --- online: the translators package ---------------------------------------------------------

Transport = Callable[[str, str, str], str]  # (text, source, target) -> translation


def translators_transport(provider: str = "google", timeout_s: float = 10.0) -> Transport:
    """A transport calling ``translators.translate_text`` (imported on first use: the package and
    its HTTP stack are only needed when the online backend is chosen)."""

    def call(text: str, source: str, target: str) -> str:
        try:
            import translators
        except ImportError as err:
            raise TranslationError(
                "the online translator needs the 'translators' package: pip install 'memotion[translate-online]'"
            ) from err
        result = translators.translate_text(
            text,
            translator=provider,
            from_language=source,
            to_language=target,
            timeout=timeout_s,
        )
        return str(result)

    return call


class OnlineTranslator:
    """Translation through a web API (the paper's set-up). Needs internet access at run time."""

    def __init__(self, provider: str = "google", timeout_s: float = 10.0, transport: Transport | None = None) -> None:
        self.provider = provider
        self.name = f"online:{provider}"
        self._transport = transport or translators_transport(provider, timeout_s)

    def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        out = []
        for text in texts:
            if not text.strip():
                out.append(text)
                continue
            try:
                translated = self._transport(text, source, target)
            except TranslationError:
                raise
            except Exception as err:
                raise TranslationError(f"{self.name} could not translate {source}->{target}: {err}") from err
            if not isinstance(translated, str):
                raise TranslationError(f"{self.name} returned {type(translated).__name__}, not text")
            out.append(translated)
        return out

    def close(self) -> None:
        pass


# --- offline: CTranslate2 + SentencePiece -------------------------------------------------------


class _Direction:
    def __init__(self, directory: Path, threads: int) -> None:
        import ctranslate2
        import sentencepiece

        missing = [name for name in ("model.bin", "source.spm", "target.spm") if not (directory / name).is_file()]
        if missing:
            raise TranslationError(
                f"{directory} lacks {missing}: expected a CTranslate2 model with source.spm and target.spm"
            )
        try:
            self.translator = ctranslate2.Translator(
                str(directory), device="cpu", inter_threads=1, intra_threads=threads
            )
            self.source = sentencepiece.SentencePieceProcessor(model_file=str(directory / "source.spm"))
            self.target = sentencepiece.SentencePieceProcessor(model_file=str(directory / "target.spm"))
        except Exception as err:
            raise TranslationError(f"cannot load the translation model in {directory}: {err}") from err


class CTranslate2Translator:
    """Offline translation with CTranslate2 models from a local folder (never downloads)."""

    name = "ctranslate2"

    def __init__(
        self,
        model_dir: Path,
        directions: Sequence[tuple[str, str]] = BACK_TRANSLATION_DIRECTIONS,
        *,
        threads: int = 1,
        beam_size: int = 2,
        max_decoding_length: int = 256,
    ) -> None:
        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise TranslationError(f"translation model folder {self.model_dir} does not exist")
        self.beam_size = beam_size
        self.max_decoding_length = max_decoding_length
        self._directions = {(s, t): _Direction(self.model_dir / f"{s}-{t}", threads) for s, t in directions}

    def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        direction = self._directions.get((source, target))
        if direction is None:
            raise TranslationError(
                f"no {source}-{target} model in {self.model_dir} "
                f"(has {sorted(f'{s}-{t}' for s, t in self._directions)})"
            )
        todo = [i for i, text in enumerate(texts) if text.strip()]
        out = list(texts)
        if not todo:
            return out
        batch = [direction.source.encode(texts[i], out_type=str) + ["</s>"] for i in todo]
        try:
            # ctranslate2.Translator is thread-safe: concurrent calls queue inside it.
            results = direction.translator.translate_batch(
                batch,
                beam_size=self.beam_size,
                max_decoding_length=self.max_decoding_length,
            )
        except Exception as err:
            raise TranslationError(f"ctranslate2 {source}-{target} failed: {err}") from err
        for i, result in zip(todo, results):
            out[i] = direction.target.decode([t for t in result.hypotheses[0] if t != "</s>"])
        return out

    def close(self) -> None:
        self._directions.clear()
