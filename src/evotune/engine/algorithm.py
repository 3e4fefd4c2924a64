"""The ask/tell contract every search algorithm follows.

`ask()` returns the genomes to evaluate next; `tell(genomes, losses)` hands back their
losses (rows x objectives, lower is better; the run loop flips maximised objectives).
An algorithm's whole state is a dict of numpy arrays (`state_dict`), so a checkpoint
is portable and never pickled. The random generator belongs to the run and is passed in.

Algorithms are found by name in `ALGORITHMS`: each module registers a factory that
builds its algorithm from an `AlgorithmSetup` (trait `objectives`: `one` or `many`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from evotune.engine.operators.base import Mating, in_selection_order
from evotune.engine.registry import Registry
from evotune.engine.spaces import Space

Selection = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
Variation = Callable[[np.ndarray, np.random.Generator, Space], np.ndarray]
# Lamarckian local search: (genomes, seeds) -> improved genomes, same shape.
Refine = Callable[[np.ndarray, np.ndarray], np.ndarray]

ALGORITHMS = Registry("algorithm")


@dataclass(frozen=True)
class AlgorithmSetup:
    """Everything an algorithm may be built from, as plain values (the engine reads no
    config): each factory in `ALGORITHMS` takes what it needs."""

    space: Space
    rng: np.random.Generator
    population: int
    selection: Selection
    crossover: Variation
    mutation: Variation
    mating: Mating = in_selection_order
    elitism: int | None = None  # GA: members kept unchanged (None: 1)
    temperature: float | None = None  # annealing: start temperature (None: from the data)
    cooling: float = 0.95  # annealing: factor per step
    refine: Refine | None = None  # GA: the task's Lamarckian refinement of the elites


def handles_many_objectives(name: str) -> bool:
    return ALGORITHMS.get(name).traits.get("objectives") == "many"


class Algorithm(ABC):
    """Base class: holds the space, the run's generator and the current population."""

    name: str = ""
    multi_objective: bool = False  # False: only the first objective may exist

    def __init__(self, space: Space, rng: np.random.Generator, population: int) -> None:
        if population < 1:
            raise ValueError(f"population must be >= 1, got {population}")
        self.space = space
        self.rng = rng
        self.population_size = population
        self.genomes: np.ndarray | None = None  # current population
        self.losses: np.ndarray | None = None  # its losses, (n, objectives)

    @abstractmethod
    def ask(self) -> np.ndarray:
        """Genomes to evaluate next, (n, genes)."""

    @abstractmethod
    def tell(self, genomes: np.ndarray, losses: np.ndarray) -> None:
        """Take the evaluated genomes of the last `ask`."""

    def population(self) -> tuple[np.ndarray, np.ndarray]:
        """The current population and its losses (for statistics and reports)."""
        if self.genomes is None or self.losses is None:
            raise RuntimeError("no population yet: call ask() and tell() first")
        return self.genomes, self.losses

    keeps_elites: bool = False  # `kept()` names members carried on unchanged

    def kept(self) -> np.ndarray:
        """Members carried into the next generation without being asked again (the
        elites), whose fitness `repeat: elites` confirms; none unless the algorithm has
        such a set."""
        return np.zeros((0, self.space.n_genes))

    def revise(self, genomes: np.ndarray, losses: np.ndarray) -> None:
        """New losses for members of the population (a confirmed elite's mean)."""
        assert self.genomes is not None and self.losses is not None
        for genome, loss in zip(genomes, losses):
            rows = np.flatnonzero((self.genomes == genome).all(axis=1))
            self.losses[rows] = loss

    def state_dict(self) -> dict[str, np.ndarray]:
        if self.genomes is None or self.losses is None:
            return {}
        return {"genomes": self.genomes, "losses": self.losses}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.genomes = state.get("genomes")
        self.losses = state.get("losses")

    def _keep_best(self, genomes: np.ndarray, losses: np.ndarray) -> None:
        """Population := the best `population` of the current one plus these."""
        if self.genomes is not None:
            genomes = np.concatenate([self.genomes, genomes])
            losses = np.concatenate([self.losses, losses])
        genomes, losses = sort_by_loss(genomes, losses)
        self.genomes = genomes[: self.population_size]
        self.losses = losses[: self.population_size]


class BreedingAlgorithm(Algorithm):
    """An algorithm that breeds children by selection, mating, crossover and mutation."""

    def __init__(
        self,
        space: Space,
        rng: np.random.Generator,
        population: int,
        selection: Selection,
        crossover: Variation,
        mutation: Variation,
        mating: Mating = in_selection_order,
    ) -> None:
        super().__init__(space, rng, population)
        self.select, self.crossover, self.mutation = selection, crossover, mutation
        self.mate = mating

    def breed(self, scores: np.ndarray, n: int, pool: np.ndarray | None = None) -> np.ndarray:
        """`n` children of parents selected on `scores` (lower is better) from `pool`
        (default: the population; row i of the pool is scored by scores[i])."""
        pool = self.genomes if pool is None else pool
        parents = pool[self.mate(self.select(scores, n, self.rng), self.rng)]
        children = self.crossover(parents, self.rng, self.space)
        children = self.mutation(children, self.rng, self.space)
        return self.space.repair(children)


def sort_by_loss(genomes: np.ndarray, losses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Population sorted best first by the first objective (stable: ties keep order)."""
    order = np.argsort(losses[:, 0], kind="stable")
    return genomes[order], losses[order]
