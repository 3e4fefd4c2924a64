"""NSGA-II (Deb et al. 2002): non-dominated sorting, crowding distance, elitist survival."""

from __future__ import annotations

import moocore
import numpy as np

from evotune.engine.algorithm import (
    ALGORITHMS,
    AlgorithmSetup,
    BreedingAlgorithm,
    Selection,
    Variation,
)
from evotune.engine.operators.base import Mating, in_selection_order
from evotune.engine.spaces import Space


def non_dominated_fronts(losses: np.ndarray) -> list[np.ndarray]:
    """Indices of each front, best first, ascending within a front (minimisation).
    Non-finite losses rank last: they count as the largest float of their objective."""
    if len(losses) == 0:
        return []
    losses = np.where(np.isfinite(losses), losses, np.finfo(float).max)
    # moocore's sort is O(n log n) for 2 objectives and compiled for more: at 2,000
    # members x 3 objectives it is two orders of magnitude faster than an n^2 numpy mask
    rank = moocore.pareto_rank(losses)
    order = np.argsort(rank, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(rank[order])) + 1)


def crowding_distance(losses: np.ndarray) -> np.ndarray:
    """Crowding distance of each member of one front (boundary members: infinity)."""
    n, m = losses.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(losses[:, j], kind="stable")
        values = losses[order, j]
        span = values[-1] - values[0]
        distance[order[[0, -1]]] = np.inf
        if span > 0 and np.isfinite(span):
            distance[order[1:-1]] += (values[2:] - values[:-2]) / span
    return distance


def rank_and_crowding(losses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Front rank (0 = non-dominated) and crowding distance of every member."""
    rank = np.empty(len(losses), dtype=int)
    crowding = np.empty(len(losses))
    for r, front in enumerate(non_dominated_fronts(losses)):
        rank[front] = r
        crowding[front] = crowding_distance(losses[front])
    return rank, crowding


def crowded_order(losses: np.ndarray) -> np.ndarray:
    """Each member's position when sorted by (rank, -crowding): a scalar "loss" under
    which any single-objective selection implements the crowded-comparison operator."""
    rank, crowding = rank_and_crowding(losses)
    order = np.lexsort((-crowding, rank))
    position = np.empty(len(losses))
    position[order] = np.arange(len(losses))
    return position


class NSGA2(BreedingAlgorithm):
    """NSGA-II. Offspring that duplicate a member or each other are bred again (up to a
    few tries), as pymoo does, so the population does not fill with copies."""

    name = "nsga2"
    multi_objective = True

    def __init__(
        self,
        space: Space,
        rng: np.random.Generator,
        population: int,
        selection: Selection,
        crossover: Variation,
        mutation: Variation,
        max_tries: int = 10,
        mating: Mating = in_selection_order,
    ) -> None:
        super().__init__(space, rng, population, selection, crossover, mutation, mating)
        self.max_tries = max_tries

    def ask(self) -> np.ndarray:
        if self.genomes is None:
            return self.space.sample(self.population_size, self.rng)
        position = crowded_order(self.losses)
        seen = {self.space.hash(g) for g in self.genomes}
        kept: list[np.ndarray] = []
        for _ in range(self.max_tries):
            for child in self.breed(position, self.population_size):
                key = self.space.hash(child)
                if key not in seen and len(kept) < self.population_size:
                    seen.add(key)
                    kept.append(child)
            if len(kept) == self.population_size:
                break
        if not kept:  # the space is exhausted: evaluate copies rather than nothing
            return self.genomes.copy()
        return np.stack(kept)

    def tell(self, genomes: np.ndarray, losses: np.ndarray) -> None:
        if self.genomes is not None:
            genomes = np.concatenate([self.genomes, genomes])
            losses = np.concatenate([self.losses, losses])
        keep = survivors(losses, self.population_size)
        self.genomes, self.losses = genomes[keep], losses[keep]


def survivors(losses: np.ndarray, n: int) -> np.ndarray:
    """Indices of the `n` members NSGA-II keeps: whole fronts, then the least crowded
    members of the front that does not fit."""
    keep: list[int] = []
    for front in non_dominated_fronts(losses):
        if len(keep) + len(front) <= n:
            keep.extend(front)
            continue
        crowding = crowding_distance(losses[front])
        order = np.argsort(-crowding, kind="stable")
        keep.extend(front[order[: n - len(keep)]])
        break
    return np.array(keep, dtype=int)


@ALGORITHMS.register("nsga2", traits={"objectives": "many"})
def build_nsga2(setup: AlgorithmSetup) -> NSGA2:
    """NSGA-II (Deb et al. 2002): non-dominated sorting and crowding distance."""
    return NSGA2(
        setup.space,
        setup.rng,
        setup.population,
        setup.selection,
        setup.crossover,
        setup.mutation,
        mating=setup.mating,
    )
