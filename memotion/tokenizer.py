"""CLIP text tokenisation from a ``tokenizers`` JSON file (no torch): the gateway's tokenizer.

Gives the same ids as ``open_clip.tokenize``: <start_of_text> tokens <end_of_text>, truncated to the
context length with <end_of_text> kept last, padded with ``pad_id``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer


def trim_token_ids(input_ids: np.ndarray, multiple: int = 1) -> np.ndarray:
    """CLIP ids [B, L] cut to the batch's longest text (tokens up to its <end_of_text>, the highest
    id of the vocabulary), rounded up to a multiple of ``multiple`` and at most L: a view, no copy.

    Exact for a model whose manifest entry has ``token_trimming`` (causal text tower, packed
    BiLSTM, padding masked): only padding after every text's <end_of_text> is dropped."""
    if input_ids.ndim != 2 or input_ids.shape[1] == 0:
        return input_ids
    longest = int(input_ids.argmax(axis=1).max()) + 1
    length = min(-(-longest // multiple) * multiple, input_ids.shape[1])
    return input_ids[:, :length]


class ClipTokenizer:
    def __init__(self, tokenizer_file: str | Path, context_length: int, pad_id: int = 0) -> None:
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.context_length = context_length
        self.pad_id = pad_id
        eot_id = self._tokenizer.token_to_id("<end_of_text>")
        if eot_id is None:
            raise ValueError(f"{tokenizer_file}: no <end_of_text> token")
        self.eot_id: int = eot_id

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> int64 [len(texts), context_length]."""
        ids = np.full((len(texts), self.context_length), self.pad_id, dtype=np.int64)
        # open_clip's basic_clean unescapes HTML entities twice; do the same.
        cleaned = [html.unescape(html.unescape(text)) for text in texts]
        for row, encoding in enumerate(self._tokenizer.encode_batch(cleaned)):
            tokens = encoding.ids
            if len(tokens) > self.context_length:
                tokens = tokens[: self.context_length]
                tokens[-1] = self.eot_id
            ids[row, : len(tokens)] = tokens
        return ids


def load_wordpiece(
    tokenizer_file: str | Path, max_length: int, strategy: str = "longest_first"
) -> tuple[Tokenizer, int]:
    """A BERT WordPiece ``tokenizers`` file set to truncate (``strategy``, for pairs) and pad to
    ``max_length`` with ``[PAD]``; (the tokenizer, the pad id). ValueError for any other file."""
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    pad_id = tokenizer.token_to_id("[PAD]")
    if pad_id is None or tokenizer.token_to_id("[CLS]") is None:
        raise ValueError(f"{tokenizer_file}: not a BERT WordPiece tokenizer (no [PAD]/[CLS])")
    tokenizer.enable_truncation(max_length, strategy=strategy)
    tokenizer.enable_padding(length=max_length, pad_id=pad_id, pad_token="[PAD]")
    return tokenizer, pad_id


class WordPieceTokenizer:
    """BERT WordPiece over single texts from a ``tokenizers`` JSON file (the ``bert_text`` member's):
    ``[CLS] text [SEP]``, truncated to ``max_length`` (``[SEP]`` kept last), padded with ``[PAD]``.
    Training makes its inputs with this class too, so both sides get the same ids."""

    def __init__(self, tokenizer_file: str | Path, max_length: int) -> None:
        self._tokenizer, self.pad_id = load_wordpiece(tokenizer_file, max_length)
        self.max_length = max_length

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> int64 [len(texts), max_length]."""
        encodings = self._tokenizer.encode_batch(list(texts))
        return np.array([e.ids for e in encodings], dtype=np.int64).reshape(len(texts), self.max_length)
