"""NB-LR (Wang & Manning 2012, "Baselines and Bigrams", the NBSVM with a logistic loss): binary
n-gram features scaled by the naive-Bayes log-count ratio, one binary logistic regression per class
(one-vs-rest), the classes' sigmoids normalised to sum to 1. Pure numpy + scikit-learn.

Per class k, with f the binary feature rows (present n-grams) and alpha the smoothing:
    p = alpha + sum of f over rows of class k, q = alpha + sum of f over the other rows
    r_k = log((p / |p|_1) / (q / |q|_1))                     (W&M eq. 2, one class against the rest)
    z_k = (f * r_k) . w_k + b_k = f . (r_k * w_k) + b_k      (so r_k folds into the weights)
    P(k) = sigmoid(z_k) / sum_j sigmoid(z_j) = softmax_k(log sigmoid(z))
The last line is how the ONNX graph serves it: logits log sigmoid(z) = -softplus(-z).
"""

from __future__ import annotations

import numpy as np

NB_ALPHA = 1.0


def binary(x):
    """Binary presence (1 where a feature is non-zero) of a dense array or a scipy sparse matrix
    (kept sparse: CSR), as float64."""
    from scipy import sparse

    if sparse.issparse(x):
        present = sparse.csr_matrix(x, dtype=np.float64, copy=True)
        present.eliminate_zeros()
        present.data[:] = 1.0
        return present
    return (np.asarray(x) != 0).astype(np.float64)


def log_count_ratio(f, positive: np.ndarray, alpha: float = NB_ALPHA) -> np.ndarray:
    """r of W&M eq. 2 for the rows where ``positive`` is true against the rest (``f``: presence)."""
    p = alpha + np.asarray(f[positive].sum(axis=0)).ravel()
    q = alpha + np.asarray(f[~positive].sum(axis=0)).ravel()
    return np.log((p / p.sum()) / (q / q.sum()))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class NbLrHead:
    """A fitted NB-LR head: ``weight`` [features, classes] (r_k * w_k per class column), ``bias``
    [classes]; ``predict_proba`` reads any features (TF-IDF rows) through their presence."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, classes: np.ndarray) -> None:
        self.weight, self.bias, self.classes_ = weight, bias, classes

    def decision(self, x) -> np.ndarray:
        """z [N, classes]."""
        return np.asarray(binary(x) @ self.weight) + self.bias

    def predict_proba(self, x) -> np.ndarray:
        s = sigmoid(self.decision(x).astype(np.float64))
        return s / s.sum(axis=1, keepdims=True)


def fit_nb_lr(x, y: np.ndarray, c: float, class_weight: str | None, max_iter: int = 2000) -> NbLrHead:
    """One binary logistic regression per class present in ``y`` on the ratio-scaled presence of ``x``."""
    from sklearn.linear_model import LogisticRegression

    f = binary(x)
    classes = np.unique(y)
    weight = np.zeros((f.shape[1], len(classes)), np.float64)
    bias = np.zeros(len(classes), np.float64)
    for column, k in enumerate(classes):
        positive = y == k
        r = log_count_ratio(f, positive)
        scaled = f.multiply(r).tocsr() if hasattr(f, "multiply") else f * r
        model = LogisticRegression(C=c, class_weight=class_weight, max_iter=max_iter).fit(scaled, positive)
        weight[:, column] = r * model.coef_[0]
        bias[column] = model.intercept_[0]
    return NbLrHead(weight, bias, classes)
