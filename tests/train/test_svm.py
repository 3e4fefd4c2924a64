"""The pickle-free SVM: numpy prediction from public SVC attributes equals SVC's own."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.svm import SVC

from evotune.train.svm import fit_svm, svm_arrays, svm_decision, svm_gamma, svm_predict


def blobs(classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping Gaussian blobs with labels that are not 0..k-1 (classes_ matters)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.5, (classes, 5))
    labels = np.repeat(np.arange(classes) * 3 + 1, 40)
    codes = centres[(labels - 1) // 3] + rng.normal(0, 1.0, (len(labels), 5))
    return codes.astype(np.float32), labels


def queries(seed: int = 1) -> np.ndarray:
    # spread wider than the training data, so far-away points give tied votes too
    return np.random.default_rng(seed).normal(0, 4.0, (2000, 5)).astype(np.float32)


@pytest.mark.parametrize("classes", [3, 4, 5])
def test_one_vs_one_vote_equals_svc_predict(classes):
    codes, labels = blobs(classes)
    svm = fit_svm(codes, labels, c=1.0, gamma="scale")
    arrays = svm_arrays(svm)
    x = queries()
    np.testing.assert_array_equal(svm_predict(arrays, x), svm.predict(x))
    expected = SVC(kernel="rbf", gamma=svm.gamma, decision_function_shape="ovo").fit(codes, labels)
    np.testing.assert_allclose(svm_decision(arrays, x), expected.decision_function(x), atol=1e-9)
    assert _tied(svm_decision(arrays, x), classes).any()  # the tie rule is exercised


def test_binary_svm_keeps_libsvm_signs():
    codes, labels = blobs(2)
    svm = fit_svm(codes, labels, c=2.0, gamma="auto")
    arrays, x = svm_arrays(svm), queries()
    np.testing.assert_array_equal(svm_predict(arrays, x), svm.predict(x))
    # scikit-learn's binary decision is libsvm's negated: positive -> classes_[1]
    np.testing.assert_allclose(-svm_decision(arrays, x)[:, 0], svm.decision_function(x), atol=1e-9)


@pytest.mark.parametrize("gamma", ["scale", "auto", 0.3])
def test_resolved_gamma_fits_the_same_svm_as_sklearn(gamma):
    codes, labels = blobs(3)
    ours = fit_svm(codes, labels, c=1.0, gamma=gamma)
    theirs = SVC(kernel="rbf", C=1.0, gamma=gamma).fit(codes, labels)
    assert isinstance(ours.gamma, float) and ours.gamma == svm_gamma(codes, gamma)
    x = queries()
    np.testing.assert_array_equal(ours.decision_function(x), theirs.decision_function(x))
    np.testing.assert_array_equal(ours.dual_coef_, theirs.dual_coef_)


def test_constant_codes_get_gamma_one_and_named_gammas_are_refused():
    assert svm_gamma(np.ones((4, 3)), "scale") == 1.0
    with pytest.raises(ValueError, match="numeric gamma"):
        svm_arrays(SVC(gamma="scale").fit(*blobs(3)))


def _tied(decision: np.ndarray, classes: int) -> np.ndarray:
    votes = np.zeros((len(decision), classes), dtype=np.int64)
    pairs = [(i, j) for i in range(classes) for j in range(i + 1, classes)]
    for pair, (i, j) in enumerate(pairs):
        votes[:, i] += decision[:, pair] > 0
        votes[:, j] += decision[:, pair] <= 0
    return (votes == votes.max(axis=1, keepdims=True)).sum(axis=1) > 1
