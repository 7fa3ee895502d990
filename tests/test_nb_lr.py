"""NB-LR (training/nb_lr.py, Wang & Manning 2012) against its formulas and scikit-learn; the
sentiment-lexicon features (training/sentiment_lexicon.py) on the lexicons the packages ship."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from training.nb_lr import binary, fit_nb_lr, log_count_ratio


def test_the_log_count_ratio_is_eq_2_of_wang_and_manning():
    f = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1]], np.float64)
    positive = np.array([True, True, False])
    p, q = 1 + np.array([2, 1, 1]), 1 + np.array([0, 1, 1])
    expected = np.log((p / p.sum()) / (q / q.sum()))
    np.testing.assert_allclose(log_count_ratio(f, positive), expected)
    np.testing.assert_allclose(log_count_ratio(sparse.csr_matrix(f), positive), expected)


def test_presence_is_binary_for_dense_and_sparse_rows():
    x = np.array([[0.0, 0.3, 0.0], [2.0, 0.0, -1.0]])
    np.testing.assert_array_equal(binary(x), [[0, 1, 0], [1, 0, 1]])
    np.testing.assert_array_equal(binary(sparse.csr_matrix(x)).toarray(), [[0, 1, 0], [1, 0, 1]])


def test_nb_lr_probabilities_are_the_normalised_one_vs_rest_sigmoids_of_scaled_presence():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = sparse.csr_matrix(rng.random((60, 12)) * (rng.random((60, 12)) < 0.3))
    y = rng.integers(0, 3, 60)
    head = fit_nb_lr(x, y, c=1.0, class_weight="balanced")
    f = binary(x).toarray()
    sigmoids = []
    for k in range(3):
        r = log_count_ratio(f, y == k)
        model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000).fit(f * r, y == k)
        sigmoids.append(model.predict_proba(f * r)[:, 1])
    s = np.stack(sigmoids, axis=1)
    np.testing.assert_allclose(head.predict_proba(x), s / s.sum(axis=1, keepdims=True), atol=1e-6)
    np.testing.assert_array_equal(head.classes_, [0, 1, 2])
    assert fit_nb_lr(x, np.where(y == 2, 0, y), 1.0, None).weight.shape == (12, 2)  # only the classes seen


def test_lexicon_features_count_and_weigh_the_installed_lexicons_words():
    from training.sentiment_lexicon import lexicon_features, load_lexicon

    vader, afinn = load_lexicon("vader"), load_lexicon("afinn")
    assert len(vader.words) > 7000 and len(afinn.words) > 3000
    assert all(w.isascii() and " " not in w for w in vader.words)
    good, bad = vader.valences[vader.words.index("good")], vader.valences[vader.words.index("bad")]
    assert good > 0 > bad and abs(good) <= 1
    f = lexicon_features(["Good GOOD bad day", "", "nothing here"], [vader], scale=2.0)
    np.testing.assert_allclose(
        f[0], 2 * np.array([np.log1p(2), np.log1p(1), np.tanh(2 * good + bad), good, bad]), rtol=1e-5
    )
    np.testing.assert_array_equal(f[1:], 0)
