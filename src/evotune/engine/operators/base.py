"""The three operator registries, the mating step, and helpers the operators share."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from evotune.engine.registry import Registry

SELECTION = Registry("selection")
CROSSOVER = Registry("crossover")
MUTATION = Registry("mutation")


# Mating: which selected parents breed together (pymoo's crossover likewise declares its
# parents per mating). Selection returns parents with their multiplicity; the mating step
# arranges them into the rows a crossover reads, so pairing is a decision of the
# algorithm, never a side effect of the order selection happens to return.
Mating = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def in_selection_order(chosen: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mates as selection returned them: already random (tournament, roulette), or
    meant to be ordered (the seed's sequential crossover pairs i with i - 1)."""
    return chosen


def random_mates(chosen: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rows (0, 1), (2, 3), ... mated at random among the chosen parents: a random
    permutation keeps each parent's number of matings."""
    return chosen[rng.permutation(len(chosen))]


def mating_for(selection: str, crossover: str) -> Mating:
    """Draw mates at random when a pairwise crossover reads parents from a selection
    that returns them ranked (truncation: best first, so rows (0, 1) would always be
    the two best); otherwise keep selection's order (see the operators' traits)."""
    ranked = SELECTION.get(selection).traits.get("order") == "ranked"
    pairwise = CROSSOVER.get(crossover).traits.get("mating", "pairs") == "pairs"
    return random_mates if ranked and pairwise else in_selection_order


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


SPARSE_RATE = 0.25  # below this, Bernoulli trials are drawn as geometric gaps (faster)


def bernoulli_indices(total: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of the successes among `total` independent trials of probability
    `rate`. Small rates draw only the gaps between successes (geometric), about
    total x rate numbers instead of `total`: the same distribution, much less work for
    the 392,000-gene genomes of task `weights`."""
    if rate <= 0 or total == 0:
        return np.empty(0, dtype=np.int64)
    if rate >= SPARSE_RATE:  # the same draws as rng.random(shape) < rate
        return np.flatnonzero(rng.random(total) < rate)
    expected = total * rate
    chunks, end = [], -1
    while end < total - 1:
        gaps = rng.geometric(rate, size=int(expected + 6 * np.sqrt(expected) + 16))
        positions = end + np.cumsum(gaps)
        chunks.append(positions)
        end = int(positions[-1])
    positions = np.concatenate(chunks)
    return positions[positions < total]
