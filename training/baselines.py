"""The baselines a practitioner tries first, on the same split as the models.

- majority class per head (the training set's most frequent class);
- TF-IDF over word 1-2 grams of the caption + logistic regression (scikit-learn), one classifier per
  head, its C and class weighting chosen on validation by macro F1 (the SemEval-2020 measure).

Both return class probabilities per head ([N, classes], the Memotion head names), so they can be
scored like the models and join the majority-vote ensembles as members.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from memotion.labels import ALL_TASKS
from training.metrics import macro_f1

NUM_CLASSES = {spec.name: spec.num_classes for spec in ALL_TASKS}


@dataclass(frozen=True)
class TfidfConfig:
    ngram_range: tuple[int, int] = (1, 2)
    min_df: int = 2
    max_features: int | None = 50_000
    c_grid: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0)
    class_weights: tuple[str | None, ...] = (None, "balanced")
    max_iter: int = 2000
    sublinear_tf: bool = True
    token_pattern: str = r"(?u)\b\w\w+\b"  # scikit-learn's default
    analyzer: str = "word"  # or "char": character n-grams (``ngram_range`` then counts characters)
    # Heads fitted by NB-LR (training/nb_lr.py: the n-grams' presence scaled by the log-count ratio,
    # one-vs-rest) instead of a multinomial regression on the TF-IDF rows; same C and weighting grid.
    nb_heads: tuple[str, ...] = ()
    # Heads fitted at all (None: every head); any other head is a constant head at its majority class,
    # for a member that votes on some heads only (the offline recipe's NB-LR votes on Task A).
    fit_heads: tuple[str, ...] | None = None


def majority_probabilities(train: Mapping[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """One-hot of the training set's most frequent class per head, for ``n`` memes."""
    out = {}
    for head, labels in train.items():
        counts = np.bincount(np.asarray(labels), minlength=NUM_CLASSES[head])
        probabilities = np.zeros((n, NUM_CLASSES[head]), np.float32)
        probabilities[:, int(counts.argmax())] = 1.0
        out[head] = probabilities
    return out


def _full_probabilities(model, features, num_classes: int) -> np.ndarray:
    """predict_proba with a column for every class (classes absent from training get 0)."""
    out = np.zeros((features.shape[0], num_classes), np.float32)
    out[:, model.classes_] = model.predict_proba(features)
    return out


@dataclass
class TfidfModel:
    """The fitted TF-IDF vectoriser and, per head, its logistic regression (None: a constant head,
    whose class is in ``chosen[head]['constant']``) with the chosen hyper-parameters."""

    vectoriser: Any
    heads: dict[str, Any]
    chosen: dict[str, dict]

    def probabilities(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """[N, classes] per head for ``texts``."""
        x = self.vectoriser.transform(list(texts))
        out = {}
        for head, model in self.heads.items():
            if model is None:
                out[head] = np.zeros((x.shape[0], NUM_CLASSES[head]), np.float32)
                out[head][:, self.chosen[head]["constant"]] = 1.0
            else:
                out[head] = _full_probabilities(model, x, NUM_CLASSES[head])
        return out


def tfidf_vectoriser(config: TfidfConfig) -> Any:
    """An unfitted scikit-learn ``TfidfVectorizer`` with ``config``'s features."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(
        ngram_range=config.ngram_range,
        min_df=config.min_df,
        max_features=config.max_features,
        sublinear_tf=config.sublinear_tf,
        lowercase=True,
        token_pattern=config.token_pattern,
        analyzer=config.analyzer,
    )


def fit_tfidf_lr(
    texts: Mapping[str, Sequence[str]],
    labels: Mapping[str, Mapping[str, np.ndarray]],
    config: TfidfConfig = TfidfConfig(),
) -> TfidfModel:
    """Fit on ``texts['train']``; per head the C and class weighting with the best validation macro
    F1 (``texts['val']``). ``labels[split][head]``: class indices."""
    vectoriser = tfidf_vectoriser(config)
    train_x = vectoriser.fit_transform(list(texts["train"]))
    val_x = vectoriser.transform(list(texts["val"]))
    heads: dict[str, Any] = {}
    chosen: dict[str, dict] = {}
    for head, train_y in labels["train"].items():
        train_y = np.asarray(train_y)
        best = None
        skipped = config.fit_heads is not None and head not in config.fit_heads
        for c in config.c_grid:
            for weight in config.class_weights:
                if len(np.unique(train_y)) < 2 or skipped:  # a constant head: nothing to learn (or asked)
                    break
                model = fit_head(head in config.nb_heads, c, weight, config.max_iter, train_x, train_y)
                val = _full_probabilities(model, val_x, NUM_CLASSES[head])
                score = macro_f1(labels["val"][head], val.argmax(axis=1), NUM_CLASSES[head])
                if best is None or score > best[0]:
                    best = (score, model, {"C": c, "class_weight": weight, "val_macro_f1": round(score, 4)})
        if best is None:
            heads[head] = None
            values, counts = np.unique(train_y, return_counts=True)
            chosen[head] = {"constant": int(values[counts.argmax()]) if len(train_y) else 0}
        else:
            heads[head], chosen[head] = best[1], best[2]
    return TfidfModel(vectoriser, heads, chosen)


def fit_head(nb: bool, c: float, weight: str | None, max_iter: int, x, y: np.ndarray):
    """A fitted head: NB-LR (``nb``) or scikit-learn's multinomial logistic regression."""
    from sklearn.linear_model import LogisticRegression

    from training.nb_lr import fit_nb_lr

    if nb:
        return fit_nb_lr(x, y, c, weight, max_iter)
    return LogisticRegression(C=c, class_weight=weight, max_iter=max_iter).fit(x, y)


def tfidf_lr_probabilities(
    texts: Mapping[str, Sequence[str]],
    labels: Mapping[str, Mapping[str, np.ndarray]],
    config: TfidfConfig = TfidfConfig(),
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict]]:
    """Fit on ``texts['train']``; per split (val, test) the probabilities per head, and per head the
    chosen hyper-parameters with their validation macro F1. ``labels[split][head]``: class indices."""
    model = fit_tfidf_lr(texts, labels, config)
    out = {split: model.probabilities(texts[split]) for split in texts if split != "train"}
    return out, model.chosen
