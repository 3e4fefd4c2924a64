"""Mutation: random changes to children. Each returns a new array."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

from evotune.engine.operators.base import MUTATION, bernoulli_indices, per_gene_rate
from evotune.engine.spaces import Space

Probability = Annotated[float, Field(ge=0, le=1)]
Rate = Annotated[float, Field(ge=0, le=1)] | None  # None: 1 / number of genes


@MUTATION.register(kinds=("binary",))
def bit_flip(
    genomes: np.ndarray, rng: np.random.Generator, space: Space, *, rate: Rate = None
) -> np.ndarray:
    """Flip each bit with probability `rate` (default 1/L, SEEDS.md §3)."""
    flip = rng.random(genomes.shape) < per_gene_rate(rate, genomes.shape[1])
    return np.where(flip, 1 - genomes, genomes).astype(genomes.dtype)


@MUTATION.register(kinds=("binary",))
def seed_flip(
    genomes: np.ndarray,
    rng: np.random.Generator,
    space: Space,
    *,
    genome_prob: Probability = 0.04,
    gene_fraction: Probability = 0.04,
) -> np.ndarray:
    """SEEDS.md §1: with probability `genome_prob` a genome flips
    round(gene_fraction x randint(0, L)) distinct random genes."""
    out = genomes.copy()
    n, length = genomes.shape
    for row in np.flatnonzero(rng.random(n) < genome_prob):
        count = int(round(gene_fraction * rng.integers(0, length + 1)))
        genes = rng.choice(length, size=count, replace=False)
        out[row, genes] = 1 - out[row, genes]
    return out


@MUTATION.register()
def reset(
    genomes: np.ndarray, rng: np.random.Generator, space: Space, *, rate: Rate = None
) -> np.ndarray:
    """Redraw each gene within its range with probability `rate` (SEEDS.md §2)."""
    fresh = space.sample(len(genomes), rng)
    redraw = rng.random(genomes.shape) < per_gene_rate(rate, genomes.shape[1])
    return np.where(redraw, fresh, genomes).astype(genomes.dtype)


def _gene_scale(space: Space) -> np.ndarray:
    """Width of each gene's range, or 1 where the range is unbounded."""
    width = space.upper - space.lower
    return np.where(np.isfinite(width) & (width > 0), width, 1.0)


@MUTATION.register(kinds=("real", "mixed"))
def gaussian(
    genomes: np.ndarray,
    rng: np.random.Generator,
    space: Space,
    *,
    rate: Rate = 1.0,
    sigma: Annotated[float, Field(gt=0)] = 0.1,
) -> np.ndarray:
    """Add N(0, sigma x range width) to each gene with probability `rate`
    (width 1 for unbounded genes)."""
    noise = rng.normal(0.0, 1.0, genomes.shape) * sigma * _gene_scale(space)
    mutate = rng.random(genomes.shape) < per_gene_rate(rate, genomes.shape[1])
    return np.where(mutate, genomes + noise, genomes).astype(genomes.dtype)


@MUTATION.register(kinds=("real", "mixed"))
def zero_out(
    genomes: np.ndarray, rng: np.random.Generator, space: Space, *, rate: Probability = 0.01
) -> np.ndarray:
    """Set each gene to zero with probability `rate` (SEEDS.md §4: 0.01)."""
    out = np.array(genomes, copy=True, order="C")  # reshape(-1) below must be a view
    out.reshape(-1)[bernoulli_indices(out.size, rate, rng)] = 0
    return out


@MUTATION.register(kinds=("real", "mixed"))
def polynomial(
    genomes: np.ndarray,
    rng: np.random.Generator,
    space: Space,
    *,
    rate: Rate = None,
    eta: Annotated[float, Field(gt=0)] = 20.0,
) -> np.ndarray:
    """Deb's polynomial mutation, each gene with probability `rate` (default 1/L).
    Bounded genes stay within bounds; unbounded ones use a range width of 1."""
    x = genomes.astype(np.float64)
    low, width = space.lower, _gene_scale(space)
    low = np.where(np.isfinite(low), low, x - 0.5 * width)
    d1, d2 = (x - low) / width, (low + width - x) / width
    u = rng.random(x.shape)
    power = 1.0 / (eta + 1.0)
    with np.errstate(invalid="ignore"):
        left = (2 * u + (1 - 2 * u) * (1 - d1) ** (eta + 1)) ** power - 1
        right = 1 - (2 * (1 - u) + 2 * (u - 0.5) * (1 - d2) ** (eta + 1)) ** power
    delta = np.where(u < 0.5, left, right)
    mutate = rng.random(x.shape) < per_gene_rate(rate, x.shape[1])
    out = np.where(mutate, x + delta * width, x)
    return np.clip(out, space.lower, space.upper).astype(genomes.dtype)
