"""The three operator registries, and helpers the operators share."""

from __future__ import annotations

import numpy as np

from evotune.engine.registry import Registry

SELECTION = Registry("selection")
CROSSOVER = Registry("crossover")
MUTATION = Registry("mutation")


def per_gene_rate(rate: float | None, n_genes: int) -> float:
    """`rate`, or 1/L when it is None (the usual default for per-gene mutation)."""
    return 1.0 / n_genes if rate is None else rate


def pair_rows(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the first and second parent of each pair (0,1), (2,3), ..."""
    first = np.arange(0, n - 1, 2)
    return first, first + 1


def mated_pairs(n: int, prob: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The pairs that do cross over, each with probability `prob`."""
    first, second = pair_rows(n)
    keep = rng.random(len(first)) < prob
    return first[keep], second[keep]
