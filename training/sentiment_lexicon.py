"""Sentiment-lexicon features for Task A (issue 23): word valences from lexicons that ship inside PyPI
packages (read from the installed package, never downloaded), turned into a few features per
caption for a logistic regression to read beside its TF-IDF n-grams. Tried out-of-fold by
bench/offline_task_a_oof.py; not in the offline recipe, where they did not help (README).

Lexicons (``LEXICONS``): VADER's ``vader_lexicon.txt`` (package ``vaderSentiment``, MIT; mean
valence -4..4) and AFINN-165 (package ``afinn``, the word list under ODbL; -5..5). Only entries that
are one ASCII word (``[a-z0-9_]+``) are kept, so the ONNX tokenizer (RE2) finds exactly the same
words as Python's ``re`` (training/tfidf_graph.py).

Features of one lexicon (valence v scaled to -1..1 by the lexicon's largest |v|; counts c of its
words in the lower-cased caption):
    log(1 + sum c [v > 0]), log(1 + sum c [v < 0]), tanh(sum c v), max over present words of
    max(v, 0), min over present words of min(v, 0)
The block is multiplied by ``scale`` (it sits beside L2-normalised TF-IDF rows). Pure numpy.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np

WORD = re.compile(r"[a-z0-9_]+")
# name -> (package, file inside it, largest |valence|)
LEXICONS = {
    "vader": ("vaderSentiment", "vader_lexicon.txt", 4.0),
    "afinn": ("afinn", "data/AFINN-en-165.txt", 5.0),
}


@dataclass(frozen=True)
class Lexicon:
    """One lexicon's one-word entries and their valences scaled to -1..1."""

    name: str
    words: tuple[str, ...]
    valences: np.ndarray  # [words] float32


def load_lexicon(name: str) -> Lexicon:
    """The installed package's lexicon file (tab-separated: word, valence, ...)."""
    if name not in LEXICONS:
        raise ValueError(f"unknown sentiment lexicon {name!r}; choose from {sorted(LEXICONS)}")
    package, file, largest = LEXICONS[name]
    try:
        text = resources.files(package).joinpath(file).read_text(encoding="utf-8")
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"sentiment lexicon {name!r} needs the package {package!r}: pip install memotion[train]"
        ) from error
    entries: dict[str, float] = {}
    for line in text.splitlines():
        fields = line.strip().split("\t")
        if len(fields) >= 2 and WORD.fullmatch(fields[0]):
            entries[fields[0]] = float(fields[1]) / largest
    words = tuple(sorted(entries))
    return Lexicon(name, words, np.array([entries[w] for w in words], np.float32))


def word_counts(texts: Sequence[str], lexicon: Lexicon) -> np.ndarray:
    """[N, words] counts of the lexicon's words in the lower-cased texts."""
    index = {w: i for i, w in enumerate(lexicon.words)}
    counts = np.zeros((len(texts), len(lexicon.words)), np.float32)
    for row, text in enumerate(texts):
        for token in WORD.findall(text.lower()):
            column = index.get(token)
            if column is not None:
                counts[row, column] += 1
    return counts


def lexicon_features(texts: Sequence[str], lexicons: Sequence[Lexicon], scale: float) -> np.ndarray:
    """[N, 5 x lexicons] the features above, times ``scale``."""
    blocks = []
    for lexicon in lexicons:
        c, v = word_counts(texts, lexicon), lexicon.valences
        present = (c > 0).astype(np.float32)
        blocks += [
            np.log1p(c @ (v > 0).astype(np.float32)),
            np.log1p(c @ (v < 0).astype(np.float32)),
            np.tanh(c @ v),
            (present * np.maximum(v, 0)).max(axis=1, initial=0.0),
            (present * np.minimum(v, 0)).min(axis=1, initial=0.0),
        ]
    return (np.stack(blocks, axis=1) * scale).astype(np.float32) if blocks else np.zeros((len(texts), 0), np.float32)
