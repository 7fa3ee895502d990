"""A fitted scikit-learn ``TfidfVectorizer`` as ONNX nodes, built by hand with onnx.helper (word or
character n-grams; skl2onnx's converter miscounts character n-grams that contain spaces).

    text [B, 1] -> [B] -> StringNormalizer (lower case, C.UTF-8) -> com.microsoft Tokenizer (tokenexp:
    the word pattern, or "." for one token per character; [B, tokens]) -> TfIdfVectorizer (term counts of
    the vocabulary's n-grams, mode TF) -> 1 + log(tf) where tf > 0 (``sublinear_tf``) -> x idf ->
    rows divided by their L2 norm (zero rows stay zero) -> features [B, vocabulary]

The graph reproduces scikit-learn exactly when the tokens are the same: a word pattern that RE2
(ONNX Runtime) and Python's re split alike (``PORTABLE_WORD_PATTERNS``, ASCII), and, for
characters, text whose whitespace is single spaces (scikit-learn folds runs of two or more
whitespace characters into one, RE2's "." skips newlines): the members' input
(memotion.raw_text.raw_text_feed) is whitespace-folded for that.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

LOCALE = "C.UTF-8"  # always present (en_US.UTF-8, skl2onnx's default, is not on slim machines)
PAD = "\x00pad"  # the tokenizer's padding: a NUL and three letters, never a word or a character token
CHARACTER_TOKENS = "."
PREFIX = "tfidf_"  # of every node output and initializer the vectoriser adds
# ASCII words of any length / of two or more characters (scikit-learn's default drops 1-letter words).
PORTABLE_WORD_PATTERNS = ("[a-zA-Z0-9_]+", "[a-zA-Z0-9_][a-zA-Z0-9_]+")


def ngram_pool(vocabulary: Mapping[str, int], analyzer: str) -> tuple[list[str], list[int], list[int], int, int]:
    """(pool_strings, ngram_counts, ngram_indexes, min n, max n) of the TfIdfVectorizer op: the
    vocabulary's n-grams as token sequences grouped by n (ngram_counts[i]: where the (i+1)-grams
    start in the pool), each with its feature column."""
    split = (lambda g: list(g)) if analyzer == "char" else (lambda g: g.split(" "))
    grams = sorted(((split(g), column) for g, column in vocabulary.items()), key=lambda t: (len(t[0]), t[1]))
    lengths = [len(tokens) for tokens, _ in grams]
    low, high = min(lengths), max(lengths)
    pool: list[str] = []
    counts: list[int] = []
    for n in range(1, high + 1):
        counts.append(len(pool))
        pool.extend(token for tokens, _ in grams if len(tokens) == n for token in tokens)
    return pool, counts, [column for _, column in grams], low, high


def tokenizer_pattern(vectoriser: Any) -> str:
    """The Tokenizer's tokenexp for ``vectoriser``; ValueError when ONNX Runtime would split differently."""
    if vectoriser.analyzer == "char":
        return CHARACTER_TOKENS
    if vectoriser.analyzer == "word" and vectoriser.token_pattern in PORTABLE_WORD_PATTERNS:
        return vectoriser.token_pattern
    raise ValueError(
        f"analyzer {vectoriser.analyzer!r} with token_pattern {vectoriser.token_pattern!r} has no exact ONNX "
        f"tokenizer; use analyzer 'char' or a word pattern of {PORTABLE_WORD_PATTERNS}"
    )


def vectoriser_nodes(vectoriser: Any, text: str, features: str) -> tuple[list, list]:
    """(nodes, initializers) computing ``vectoriser.transform`` from string ``text`` [B, 1] into
    float ``features`` [B, vocabulary] (names prefixed ``tfidf_``)."""
    from onnx import helper

    if not vectoriser.lowercase or vectoriser.strip_accents is not None or vectoriser.norm != "l2":
        raise ValueError("only lowercase=True, strip_accents=None, norm='l2' vectorisers are exported")
    pool, counts, indexes, low, high = ngram_pool(vectoriser.vocabulary_, vectoriser.analyzer)
    p = PREFIX
    nodes = [
        helper.make_node("Reshape", [text, f"{p}flat_shape"], [f"{p}flat"]),
        helper.make_node("StringNormalizer", [f"{p}flat"], [f"{p}lower"], case_change_action="LOWER", locale=LOCALE),
        helper.make_node(
            "Tokenizer",
            [f"{p}lower"],
            [f"{p}tokens"],
            domain="com.microsoft",
            mark=0,
            mincharnum=1,
            pad_value=PAD,
            tokenexp=tokenizer_pattern(vectoriser),
        ),
        helper.make_node(
            "TfIdfVectorizer",
            [f"{p}tokens"],
            [f"{p}tf"],
            mode="TF",
            min_gram_length=low,
            max_gram_length=high,
            max_skip_count=0,
            pool_strings=pool,
            ngram_counts=counts,
            ngram_indexes=indexes,
        ),
    ]
    tf_nodes, tf = _sublinear_nodes(f"{p}tf") if vectoriser.sublinear_tf else ([], f"{p}tf")
    nodes += [
        *tf_nodes,
        helper.make_node("Mul", [tf, f"{p}idf"], [f"{p}weighted"]),
        helper.make_node("ReduceL2", [f"{p}weighted"], [f"{p}norm"], axes=[1], keepdims=1),
        helper.make_node("Max", [f"{p}norm", f"{p}tiny"], [f"{p}norm_safe"]),
        helper.make_node("Div", [f"{p}weighted", f"{p}norm_safe"], [features]),
    ]
    return nodes, _constants(vectoriser)


def _sublinear_nodes(tf: str) -> tuple[list, str]:
    """1 + log(tf) where tf > 0, else 0 (scikit-learn's sublinear_tf): log(max(tf, 1)) + (tf > 0)."""
    from onnx import helper

    p = PREFIX
    nodes = [
        helper.make_node("Max", [tf, f"{p}one"], [f"{p}tf_floor"]),
        helper.make_node("Log", [f"{p}tf_floor"], [f"{p}tf_log"]),
        helper.make_node("Greater", [tf, f"{p}zero"], [f"{p}present"]),
        helper.make_node("Cast", [f"{p}present"], [f"{p}present_f"], to=1),
        helper.make_node("Add", [f"{p}tf_log", f"{p}present_f"], [f"{p}tf_sub"]),
    ]
    return nodes, f"{p}tf_sub"


def _constants(vectoriser: Any) -> list:
    from onnx import numpy_helper

    idf = np.asarray(vectoriser.idf_ if vectoriser.use_idf else np.ones(len(vectoriser.vocabulary_)), np.float32)
    constants = {
        "flat_shape": np.array([-1], np.int64),
        **({"one": np.array(1.0, np.float32), "zero": np.array(0.0, np.float32)} if vectoriser.sublinear_tf else {}),
        "tiny": np.array(1e-30, np.float32),
        "idf": idf,
    }
    return [numpy_helper.from_array(v, f"{PREFIX}{k}") for k, v in constants.items()]
