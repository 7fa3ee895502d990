"""The ``text`` input of a string-input member (tfidf_lr): the caption with its whitespace folded
to single spaces, as a string [B, 1] array. Training fits on and the gateway feeds exactly this,
so a member's ONNX tokenizer (RE2: "." skips newlines) and scikit-learn's character n-grams
(which fold runs of whitespace) see the same characters. Pure numpy."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def fold_whitespace(text: str) -> str:
    """Runs of whitespace (spaces, tabs, newlines, Unicode spaces) -> one space; ends stripped."""
    return " ".join(text.split())


def raw_text_feed(texts: Iterable[str]) -> np.ndarray:
    """[B, 1] object array of the whitespace-folded texts."""
    return np.array([fold_whitespace(t) for t in texts], dtype=object).reshape(-1, 1)
