"""Crossover: children from parents. Input and output have the same shape."""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
from pydantic import Field

from evotune.engine.operators.base import CROSSOVER, bernoulli_indices, mated_pairs
from evotune.engine.spaces import Space

Probability = Annotated[float, Field(ge=0, le=1)]


def _swap_where(children: np.ndarray, a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> None:
    """Exchange genes of rows a[i] and b[i] where mask[i] is True (in place)."""
    first, second = children[a], children[b]
    children[a] = np.where(mask, second, first)
    children[b] = np.where(mask, first, second)


@CROSSOVER.register()
def one_point(
    parents: np.ndarray, rng: np.random.Generator, space: Space, *, prob: Probability = 1.0
) -> np.ndarray:
    """Pairs exchange their tails after one cut in [1, L)."""
    children = parents.copy()
    a, b = mated_pairs(len(parents), prob, rng)
    length = parents.shape[1]
    cut = rng.integers(1, max(2, length), size=(len(a), 1))
    _swap_where(children, a, b, np.arange(length) >= cut)
    return children


@CROSSOVER.register()
def two_point(
    parents: np.ndarray, rng: np.random.Generator, space: Space, *, prob: Probability = 1.0
) -> np.ndarray:
    """Pairs exchange the segment between two distinct cuts (SEEDS.md §2)."""
    children = parents.copy()
    a, b = mated_pairs(len(parents), prob, rng)
    length = parents.shape[1]
    if length < 3:
        return one_point(parents, rng, space, prob=prob)
    # Two distinct cuts in [1, L): sample without replacement per pair, then sort.
    cuts = np.sort(rng.random((len(a), length - 1)).argsort(axis=1)[:, :2] + 1, axis=1)
    genes = np.arange(length)
    _swap_where(children, a, b, (genes >= cuts[:, :1]) & (genes < cuts[:, 1:]))
    return children


@CROSSOVER.register()
def uniform(
    parents: np.ndarray,
    rng: np.random.Generator,
    space: Space,
    *,
    prob: Probability = 1.0,
    swap: Probability = 0.5,
) -> np.ndarray:
    """Each gene of a mated pair is exchanged with probability `swap` (SEEDS.md §3; §4:
    swap 0.2, i.e. each gene from parent 1 with p = 0.8). Only the exchanged genes are
    touched, which matters for 392,000-gene weight matrices."""
    children = parents.copy()
    a, b = mated_pairs(len(parents), prob, rng)
    length = parents.shape[1]
    rows, cols = np.divmod(bernoulli_indices(len(a) * length, swap, rng), length)
    first, second = a[rows], b[rows]
    kept = children[first, cols]
    children[first, cols] = children[second, cols]
    children[second, cols] = kept
    return children


@CROSSOVER.register(traits={"mating": "sequence"})
def sequential(parents: np.ndarray, rng: np.random.Generator, space: Space) -> np.ndarray:
    """SEEDS.md §1: child i = parent[i][:cut] + parent[i-1][cut:] (child 0 pairs the first
    parent with the last), cut uniform in [frozen prefix, L). One child per parent."""
    low = getattr(space, "frozen_prefix", 0)
    n, length = parents.shape
    cut = rng.integers(low, length, size=(n, 1))
    previous = np.roll(parents, 1, axis=0)
    return np.where(np.arange(length) < cut, parents, previous)


@CROSSOVER.register(traits={"mating": "own"})
def random_pairs(parents: np.ndarray, rng: np.random.Generator, space: Space) -> np.ndarray:
    """SEEDS.md §1, "random" variant: each child joins the head of one random parent and
    the tail of another, cut uniform in [0, L)."""
    n, length = parents.shape
    head = rng.integers(0, n, size=n)
    tail = (head + rng.integers(1, max(2, n), size=n)) % n  # a different parent when n > 1
    cut = rng.integers(0, length, size=(n, 1))
    return np.where(np.arange(length) < cut, parents[head], parents[tail])


def _sbx_spread(u: np.ndarray, eta: float, beta: np.ndarray | None) -> np.ndarray:
    """Deb's spread factor for random u in [0, 1); `beta` bounds it (None: unbounded)."""
    if beta is None:
        return np.where(
            u <= 0.5, (2 * u) ** (1 / (eta + 1)), (1 / (2 * (1 - u))) ** (1 / (eta + 1))
        )
    alpha = 2.0 - beta ** -(eta + 1.0)
    return np.where(
        u <= 1.0 / alpha,
        (u * alpha) ** (1.0 / (eta + 1.0)),
        (1.0 / (2.0 - u * alpha)) ** (1.0 / (eta + 1.0)),
    )


@CROSSOVER.register(kinds=("real", "mixed"))
def sbx(
    parents: np.ndarray,
    rng: np.random.Generator,
    space: Space,
    *,
    prob: Probability = 0.9,
    eta: Annotated[float, Field(gt=0)] = 15.0,
    prob_var: Probability = 0.5,
) -> np.ndarray:
    """Simulated binary crossover (Deb & Agrawal), bounded when the space has bounds."""
    children = parents.astype(np.float64)
    a, b = mated_pairs(len(parents), prob, rng)
    y1, y2 = np.minimum(children[a], children[b]), np.maximum(children[a], children[b])
    delta = y2 - y1
    active = (rng.random(y1.shape) < prob_var) & (delta > 1e-14)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        low, high = space.lower, space.upper
        bounded = math.isfinite(low.min()) and math.isfinite(high.max())
        beta1 = 1.0 + 2.0 * (y1 - low) / delta if bounded else None
        beta2 = 1.0 + 2.0 * (high - y2) / delta if bounded else None
        u = rng.random(y1.shape)
        c1 = 0.5 * (y1 + y2 - _sbx_spread(u, eta, beta1) * delta)
        c2 = 0.5 * (y1 + y2 + _sbx_spread(u, eta, beta2) * delta)
    exchange = rng.random(y1.shape) < 0.5  # which child gets which value
    c1, c2 = np.where(exchange, c2, c1), np.where(exchange, c1, c2)
    children[a] = np.where(active, c1, children[a])
    children[b] = np.where(active, c2, children[b])
    return np.clip(children, space.lower, space.upper)
