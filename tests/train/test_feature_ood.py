"""Feature-based OOD scores against direct computations (numpy, scikit-learn)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from evotune.train.feature_ood import FeatureReference
from evotune.train.ood import auroc


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    x = rng.normal(size=(120, 6)) + y[:, None] * np.array([2.0, 0, 1, 0, 0, -1])
    queries = rng.normal(size=(40, 6)) * 2
    masks = (rng.random((5, 6)) < 0.6).astype(np.float64)
    masks[0] = 1
    return torch.tensor(x), torch.tensor(y), torch.tensor(queries), torch.tensor(masks)


def test_mahalanobis_is_minus_the_distance_to_the_nearest_class_mean(data):
    x, y, q, masks = data
    ref = FeatureReference(x, y, 3)
    got = ref.scores("mahalanobis", masks, q).numpy()
    for g, mask in enumerate(masks.numpy().astype(bool)):
        xs, qs = x.numpy()[:, mask], q.numpy()[:, mask]
        means = np.stack([xs[y.numpy() == c].mean(axis=0) for c in range(3)])
        centred = xs - means[y.numpy()]
        cov = centred.T @ centred / len(xs) + ref.ridge * np.eye(mask.sum())
        inv = np.linalg.inv(cov)
        diff = qs[:, None, :] - means[None]
        dist = np.sqrt(np.einsum("ncd,de,nce->nc", diff, inv, diff)).min(axis=1)
        np.testing.assert_allclose(got[g], -dist, rtol=1e-9)


def test_knn_is_minus_the_distance_to_the_kth_neighbour_of_normalised_features(data):
    x, y, q, masks = data
    got = FeatureReference(x, y, 3, k=7).scores("knn", masks, q).numpy()
    for g, mask in enumerate(masks.numpy().astype(bool)):
        unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
        nn = NearestNeighbors(n_neighbors=7).fit(unit(x.numpy()[:, mask]))
        dist = nn.kneighbors(unit(q.numpy()[:, mask]))[0][:, -1]
        np.testing.assert_allclose(got[g], -dist, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["mahalanobis", "knn"])
def test_a_genomes_scores_do_not_depend_on_its_companions(data, kind):
    x, y, q, masks = data
    ref = FeatureReference(x, y, 3, k=5)
    together = ref.scores(kind, masks, q)
    for g in range(len(masks)):
        assert torch.equal(ref.scores(kind, masks[g : g + 1], q)[0], together[g])


def test_far_inputs_are_told_apart_and_auroc_matches_scikit_learn(data):
    x, y, _, masks = data
    ref = FeatureReference(x, y, 3, k=5)
    near, far = x[:30] + 0.1, x[:30] + 8.0
    for kind in ("mahalanobis", "knn"):
        a = ref.scores(kind, masks[:1], near)[0]
        b = ref.scores(kind, masks[:1], far)[0]
        expected = roc_auc_score(np.r_[np.ones(30), np.zeros(30)], np.r_[a.numpy(), b.numpy()])
        assert float(auroc(a, b)) == pytest.approx(expected) and expected > 0.65


def test_k_larger_than_the_training_set_is_refused(data):
    x, y, _, _ = data
    with pytest.raises(ValueError, match="k = 500 is larger than the 120 training examples"):
        FeatureReference(x, y, 3, k=500)
