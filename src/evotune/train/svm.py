"""RBF SVM on autoencoder codes, saved as plain arrays (no pickle) and applied in numpy.

scikit-learn's SVC trains it (one-vs-one, libsvm). To keep a run directory free of
pickles, `svm_arrays` takes out what prediction needs (support vectors, dual
coefficients, intercepts, gamma, classes) from SVC's public attributes, and
`svm_predict` reproduces libsvm's one-vs-one vote from them.
"""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.svm import SVC


def fit_svm(codes: np.ndarray, labels: np.ndarray, c: float, gamma: str | float) -> SVC:
    """SVC with a numeric gamma (resolved by `svm_gamma`), so the gamma used is public."""
    return SVC(kernel="rbf", C=c, gamma=svm_gamma(codes, gamma)).fit(codes, labels)


def svm_gamma(codes: np.ndarray, gamma: str | float) -> float:
    """The RBF gamma SVC would use: "scale" and "auto" computed exactly as scikit-learn
    does (on the float64 training data SVC fits on)."""
    if isinstance(gamma, Real):
        return float(gamma)
    x = np.ascontiguousarray(codes, dtype=np.float64)
    if gamma == "auto":
        return 1.0 / x.shape[1]
    if gamma == "scale":
        variance = x.var()
        return float(1.0 / (x.shape[1] * variance)) if variance != 0 else 1.0
    raise ValueError(f"gamma must be a number, 'scale' or 'auto', got {gamma!r}")


def svm_arrays(svm: SVC) -> dict[str, np.ndarray]:
    """What prediction needs, as named arrays in libsvm's sign convention (the one files
    written before used): a positive pair decision votes for the pair's first class."""
    if not isinstance(svm.gamma, Real):
        raise ValueError(f"svm_arrays needs an SVC fitted with a numeric gamma, got {svm.gamma!r}")
    # scikit-learn negates the public dual_coef_ and intercept_ of a binary SVC only
    sign = -1.0 if len(svm.classes_) == 2 else 1.0
    return {
        "support_vectors": np.asarray(svm.support_vectors_, dtype=np.float64),
        "dual_coef": sign * np.asarray(svm.dual_coef_, dtype=np.float64),
        "intercept": sign * np.asarray(svm.intercept_, dtype=np.float64),
        "n_support": np.asarray(svm.n_support_, dtype=np.int64),
        "classes": np.asarray(svm.classes_, dtype=np.int64),
        "gamma": np.asarray(float(svm.gamma)),
    }


def svm_decision(arrays: dict[str, np.ndarray], codes: np.ndarray) -> np.ndarray:
    """One-vs-one decision values (N, pairs), pairs (0,1), (0,2) ... (1,2) ... as libsvm
    orders them; positive votes for the pair's first class."""
    sv, coef = arrays["support_vectors"], arrays["dual_coef"]
    kernel = _rbf(np.asarray(codes, dtype=np.float64), sv, float(arrays["gamma"]))
    starts = np.concatenate([[0], np.cumsum(arrays["n_support"])])
    k = len(arrays["classes"])
    columns = []
    for i, j in _pairs(k):
        si, sj = slice(starts[i], starts[i + 1]), slice(starts[j], starts[j + 1])
        # class i's coefficients against j sit in row j - 1, class j's against i in row i
        columns.append(kernel[:, si] @ coef[j - 1, si] + kernel[:, sj] @ coef[i, sj])
    return np.stack(columns, axis=1) + arrays["intercept"][None, :]


def svm_predict(arrays: dict[str, np.ndarray], codes: np.ndarray) -> np.ndarray:
    """Labels of `codes` (N, d): libsvm's one-vs-one vote, ties to the lower class."""
    votes = svm_votes(arrays, codes)
    return arrays["classes"][np.argmax(votes, axis=1)]  # argmax takes the first of equal counts


def svm_votes(arrays: dict[str, np.ndarray], codes: np.ndarray) -> np.ndarray:
    """One-vs-one votes (N, k) won by each of the SVM's classes (`arrays["classes"]`)."""
    decision = svm_decision(arrays, codes)
    k = len(arrays["classes"])
    votes = np.zeros((len(decision), k), dtype=np.int64)
    for pair, (i, j) in enumerate(_pairs(k)):
        votes[:, i] += decision[:, pair] > 0
        votes[:, j] += decision[:, pair] <= 0
    return votes


def _pairs(k: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(k) for j in range(i + 1, k)]


def _rbf(x: np.ndarray, sv: np.ndarray, gamma: float) -> np.ndarray:
    distances = (x * x).sum(1)[:, None] - 2 * x @ sv.T + (sv * sv).sum(1)[None, :]
    return np.exp(-gamma * np.maximum(distances, 0.0))
