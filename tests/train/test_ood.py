"""OOD scores on hand-made logits, and AUROC against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from evotune.train.ood import auroc, ood_scores

LOGITS = torch.tensor([[10.0, 0.0, 0.0], [1.0, 1.0, 1.0], [2.0, -1.0, 0.5]])


def softmax_max(row: list[float], t: float) -> float:
    e = [math.exp(v / t) for v in row]
    return max(e) / sum(e)


@pytest.mark.parametrize("kind,t", [("odin", 1000.0), ("msp", 1.0), ("odin", 2.0)])
def test_max_softmax_scores(kind, t):
    scores = ood_scores(LOGITS, kind, None if t in (1000.0, 1.0) else t)
    expected = [softmax_max(r, t) for r in LOGITS.tolist()]
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-12)
    assert scores[1] == pytest.approx(1 / 3)


def test_energy_is_temperature_times_logsumexp():
    scores = ood_scores(LOGITS, "energy", 2.0)
    expected = [2.0 * math.log(sum(math.exp(v / 2.0) for v in r)) for r in LOGITS.tolist()]
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-12)


def test_odin_keeps_differences_float32_would_lose():
    logits = torch.tensor([[5.0, 0.0], [5.0001, 0.0]])
    scores = ood_scores(logits, "odin")
    assert scores[1] > scores[0]


def test_auroc_matches_scikit_learn_with_ties_and_batches():
    rng = np.random.default_rng(0)
    ins = np.round(rng.normal(1.0, 1.0, (5, 40)), 1)  # rounding makes ties
    outs = np.round(rng.normal(0.0, 1.0, (5, 30)), 1)
    got = auroc(torch.from_numpy(ins), torch.from_numpy(outs)).numpy()
    for i in range(5):
        labels = np.r_[np.ones(40), np.zeros(30)]
        assert got[i] == pytest.approx(roc_auc_score(labels, np.r_[ins[i], outs[i]]), abs=1e-12)


def test_auroc_extremes():
    assert auroc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 1.0
    assert auroc(torch.tensor([0.0]), torch.tensor([1.0])) == 0.0
    assert auroc(torch.tensor([1.0, 1.0]), torch.tensor([1.0])) == 0.5
