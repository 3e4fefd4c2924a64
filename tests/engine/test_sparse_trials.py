"""Sparse Bernoulli trials (geometric gaps): the same distribution as dense draws."""

from __future__ import annotations

import numpy as np
import pytest

from evotune.engine.operators.base import bernoulli_indices
from evotune.engine.operators.mutation import zero_out
from evotune.engine.spaces import RealVectorSpace


@pytest.mark.parametrize("rate", [0.001, 0.01, 0.04, 0.2])
def test_success_count_and_positions_follow_the_rate(rate):
    rng = np.random.default_rng(0)
    total = 200_000
    counts, hits = [], np.zeros(10)
    for _ in range(20):
        idx = bernoulli_indices(total, rate, rng)
        assert np.all(np.diff(idx) > 0) and idx.min() >= 0 and idx.max() < total
        counts.append(len(idx))
        hits += np.bincount(idx * 10 // total, minlength=10)
    expected = total * rate
    assert np.mean(counts) == pytest.approx(expected, rel=4 / np.sqrt(expected * 20))
    assert np.std(counts) == pytest.approx(np.sqrt(expected * (1 - rate)), rel=0.5)
    assert hits.min() > 0.9 * hits.mean()  # spread evenly over the positions


def test_edge_cases():
    rng = np.random.default_rng(1)
    assert len(bernoulli_indices(100, 0.0, rng)) == 0
    assert len(bernoulli_indices(0, 0.5, rng)) == 0
    assert len(bernoulli_indices(1, 0.01, rng)) <= 1


def test_zero_out_on_non_contiguous_rows_keeps_the_rest():
    genomes = np.ones((40, 6000), dtype=np.float32)[::2]
    mutated = zero_out(genomes, np.random.default_rng(2), RealVectorSpace(6000), rate=0.01)
    assert mutated.dtype == np.float32 and mutated.shape == genomes.shape
    assert (mutated == 0).mean() == pytest.approx(0.01, abs=0.002)
    assert np.isin(mutated, [0.0, 1.0]).all()
