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


def tfidf_lr_probabilities(
    texts: Mapping[str, Sequence[str]],
    labels: Mapping[str, Mapping[str, np.ndarray]],
    config: TfidfConfig = TfidfConfig(),
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict]]:
    """Fit on ``texts['train']``; per split (val, test) the probabilities per head, and per head the
    chosen hyper-parameters with their validation macro F1. ``labels[split][head]``: class indices."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectoriser = TfidfVectorizer(
        ngram_range=config.ngram_range,
        min_df=config.min_df,
        max_features=config.max_features,
        sublinear_tf=True,
        lowercase=True,
    )
    train_x = vectoriser.fit_transform(texts["train"])
    features = {split: vectoriser.transform(texts[split]) for split in texts if split != "train"}
    out: dict[str, dict[str, np.ndarray]] = {split: {} for split in features}
    chosen: dict[str, dict] = {}
    for head, train_y in labels["train"].items():
        train_y = np.asarray(train_y)
        best = None
        for c in config.c_grid:
            for weight in config.class_weights:
                if len(np.unique(train_y)) < 2:  # a constant head: nothing to learn
                    break
                model = LogisticRegression(C=c, class_weight=weight, max_iter=config.max_iter)
                model.fit(train_x, train_y)
                val = _full_probabilities(model, features["val"], NUM_CLASSES[head])
                score = macro_f1(labels["val"][head], val.argmax(axis=1), NUM_CLASSES[head])
                if best is None or score > best[0]:
                    best = (score, model, {"C": c, "class_weight": weight, "val_macro_f1": round(score, 4)})
        if best is None:
            for split, x in features.items():
                out[split][head] = majority_probabilities({head: train_y}, x.shape[0])[head]
            chosen[head] = {"constant": int(train_y[0]) if len(train_y) else 0}
            continue
        for split, x in features.items():
            out[split][head] = _full_probabilities(best[1], x, NUM_CLASSES[head])
        chosen[head] = best[2]
    return out, chosen
