"""Selection: which population members become parents. Lower loss is better."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

from evotune.engine.operators.base import SELECTION


@SELECTION.register(traits={"order": "ranked"})
def truncation(
    losses: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    fraction: Annotated[float, Field(gt=0, le=1)] = 0.5,
) -> np.ndarray:
    """Keep the best `fraction`, returned best first and cycled to `n` (SEEDS.md §1)."""
    order = np.argsort(losses, kind="stable")
    winners = order[: max(1, int(round(fraction * len(losses))))]
    return winners[np.arange(n) % len(winners)]


@SELECTION.register()
def tournament(
    losses: np.ndarray, n: int, rng: np.random.Generator, *, k: Annotated[int, Field(ge=1)] = 2
) -> np.ndarray:
    """Each parent is the best of `k` members drawn at random (SEEDS.md §2: k = 2)."""
    entrants = rng.integers(0, len(losses), size=(n, k))
    winner = np.argmin(losses[entrants], axis=1)
    return entrants[np.arange(n), winner]


@SELECTION.register()
def roulette(losses: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Fitness-proportional: weight = worst finite loss - loss (uniform if all equal)."""
    finite = np.isfinite(losses)
    worst = np.max(losses[finite]) if finite.any() else 0.0
    weights = np.where(finite, worst - losses, 0.0)
    total = weights.sum()
    if total <= 0:  # all finite losses equal: uniform over them (over all if none is finite)
        pool = np.flatnonzero(finite) if finite.any() else np.arange(len(losses))
        return pool[rng.integers(0, len(pool), size=n)]
    return rng.choice(len(losses), size=n, p=weights / total)
