"""ConstrainedSpace: constraints between genes, enforced by repair."""

from __future__ import annotations

import numpy as np
import pytest

from evotune.engine.constraints import AtMost, ConstrainedSpace
from evotune.engine.spaces import GenomeError, Int, MixedSpace, Real


def test_repair_enforces_at_most_on_real_genes_and_keeps_valid_rows():
    space = ConstrainedSpace(
        [Real("low", 0.0, 1.0), Real("high", 0.0, 1.0)], [AtMost("low", "high")]
    )
    rows = np.array([[0.9, 0.2], [0.1, 0.5], [2.0, -1.0]])
    fixed = space.repair(rows)
    assert fixed.tolist() == [[0.2, 0.2], [0.1, 0.5], [0.0, 0.0]]
    assert space.valid(fixed).all()
    assert space.valid(rows).tolist() == [False, True, False]


def test_layout_names_the_constraints_and_differs_from_the_plain_space():
    genes = [Int("kept", 1, 5), Int("frozen", 0, 5)]
    space = ConstrainedSpace(genes, [AtMost("frozen", "kept")])
    assert space.kind == "mixed"  # mixed operators apply unchanged
    assert space.describe() != MixedSpace(genes).describe()
    assert space.describe()["constraints"] == [{"gene": "frozen", "at_most": "kept"}]


@pytest.mark.parametrize(
    ("genes", "constraint", "message"),
    [
        ([Int("a", 0, 3)], AtMost("a", "b"), "no gene named 'b'"),
        ([Int("a", 5, 9), Int("b", 0, 3)], AtMost("a", "b"), "cannot hold"),
        ([Real("a", 1e-3, 1.0, log=True), Real("b", 0.0, 1.0)], AtMost("a", "b"), "log-scaled"),
    ],
)
def test_impossible_constraints_are_refused(genes, constraint, message):
    with pytest.raises(GenomeError, match=message):
        ConstrainedSpace(genes, [constraint])
