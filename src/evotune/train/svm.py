"""RBF SVM on autoencoder codes, saved as plain arrays (no pickle) and applied in numpy.

scikit-learn's SVC trains it (one-vs-one, libsvm). To keep a run directory free of
pickles, `svm_arrays` takes out what prediction needs (support vectors, dual
coefficients, intercepts, gamma, classes) and `svm_predict` reproduces libsvm's
one-vs-one vote from them.
"""

from __future__ import annotations

import numpy as np
from sklearn.svm import SVC


def fit_svm(codes: np.ndarray, labels: np.ndarray, c: float, gamma: str | float) -> SVC:
    return SVC(kernel="rbf", C=c, gamma=gamma).fit(codes, labels)


def svm_arrays(svm: SVC) -> dict[str, np.ndarray]:
    """What prediction needs, as named arrays (libsvm's internal signs)."""
    return {
        "support_vectors": np.asarray(svm.support_vectors_, dtype=np.float64),
        "dual_coef": np.asarray(svm._dual_coef_, dtype=np.float64),
        "intercept": np.asarray(svm._intercept_, dtype=np.float64),
        "n_support": np.asarray(svm.n_support_, dtype=np.int64),
        "classes": np.asarray(svm.classes_, dtype=np.int64),
        "gamma": np.asarray(float(svm._gamma)),
    }


def svm_predict(arrays: dict[str, np.ndarray], codes: np.ndarray) -> np.ndarray:
    """Labels of `codes` (N, d): libsvm's one-vs-one vote, ties to the lower class."""
    sv, coef = arrays["support_vectors"], arrays["dual_coef"]
    kernel = _rbf(np.asarray(codes, dtype=np.float64), sv, float(arrays["gamma"]))
    starts = np.concatenate([[0], np.cumsum(arrays["n_support"])])
    classes = arrays["classes"]
    k = len(classes)
    votes = np.zeros((len(codes), k), dtype=np.int64)
    pair = 0
    for i in range(k):
        for j in range(i + 1, k):
            si, sj = slice(starts[i], starts[i + 1]), slice(starts[j], starts[j + 1])
            decision = kernel[:, si] @ coef[j - 1, si] + kernel[:, sj] @ coef[i, sj]
            decision = decision + arrays["intercept"][pair]
            votes[:, i] += decision > 0
            votes[:, j] += decision <= 0
            pair += 1
    return classes[np.argmax(votes, axis=1)]


def _rbf(x: np.ndarray, sv: np.ndarray, gamma: float) -> np.ndarray:
    distances = (x * x).sum(1)[:, None] - 2 * x @ sv.T + (sv * sv).sum(1)[None, :]
    return np.exp(-gamma * np.maximum(distances, 0.0))
