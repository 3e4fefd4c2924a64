"""Single-objective genetic algorithm: selection, crossover, mutation, elitism."""

from __future__ import annotations

import numpy as np

from evotune.engine.algorithm import (
    ALGORITHMS,
    AlgorithmSetup,
    BreedingAlgorithm,
    Refine,
    Selection,
    Variation,
    sort_by_loss,
)
from evotune.engine.operators.base import Mating, in_selection_order
from evotune.engine.spaces import Space


class GeneticAlgorithm(BreedingAlgorithm):
    """Generational GA. Each generation keeps the best `elitism` members unchanged and
    breeds `population - elitism` children; elites are not re-evaluated.

    With truncation(0.5), elitism = population/2, sequential crossover and seed_flip
    mutation this is SEEDS.md §1's scheme ("winners + children").

    `refine` (optional, from the task) makes it memetic: each generation the elites are
    first improved by it (e.g. a few gradient steps), then bred from and asked again
    with the children, so their new fitness is measured and the improved genomes are
    what the population carries. Its seeds come from the run's generator, so a resumed
    run asks the same genomes.
    """

    name = "ga"
    keeps_elites = True

    def __init__(
        self,
        space: Space,
        rng: np.random.Generator,
        population: int,
        selection: Selection,
        crossover: Variation,
        mutation: Variation,
        elitism: int = 1,
        refine: Refine | None = None,
        mating: Mating = in_selection_order,
    ) -> None:
        super().__init__(space, rng, population, selection, crossover, mutation, mating)
        if not 0 <= elitism < population:
            raise ValueError(f"elitism must be in [0, population), got {elitism}")
        self.elitism = elitism
        self.refine = refine

    def ask(self) -> np.ndarray:
        if self.genomes is None:
            return self.space.sample(self.population_size, self.rng)
        children = self.population_size - self.elitism
        if self.refine is None or not self.elitism:
            return self.breed(self.losses[:, 0], children)
        elites = self._refined_elites()
        pool = np.concatenate([elites, self.genomes[len(elites) :]])  # breed from the refined
        return np.concatenate([elites, self.breed(self.losses[:, 0], children, pool=pool)])

    def _refined_elites(self) -> np.ndarray:
        elites = self.genomes[: self.elitism]
        seeds = self.rng.integers(0, 2**63, size=len(elites))
        refined = self.refine(elites.copy(), seeds)
        return self.space.repair(refined)

    def kept(self) -> np.ndarray:
        if self.genomes is None or self.refine is not None:  # refined elites are re-asked
            return super().kept()
        return self.genomes[: self.elitism]

    def revise(self, genomes: np.ndarray, losses: np.ndarray) -> None:
        super().revise(genomes, losses)
        self.genomes, self.losses = sort_by_loss(self.genomes, self.losses)

    def tell(self, genomes: np.ndarray, losses: np.ndarray) -> None:
        if self.refine is not None and self.genomes is not None and self.elitism:
            # the elites were asked again (refined): keep an old one only where a
            # budget cut the generation short
            told = min(len(genomes), self.elitism)
            genomes = np.concatenate([genomes, self.genomes[told : self.elitism]])
            losses = np.concatenate([losses, self.losses[told : self.elitism]])
        elif self.genomes is not None and self.elitism:
            genomes = np.concatenate([self.genomes[: self.elitism], genomes])
            losses = np.concatenate([self.losses[: self.elitism], losses])
        self.genomes, self.losses = sort_by_loss(genomes, losses)


@ALGORITHMS.register("ga", traits={"objectives": "one"})
def build_ga(setup: AlgorithmSetup) -> GeneticAlgorithm:
    """Generational GA: selection, mating, crossover, mutation, elitism (default 1)."""
    return GeneticAlgorithm(
        setup.space,
        setup.rng,
        setup.population,
        setup.selection,
        setup.crossover,
        setup.mutation,
        elitism=1 if setup.elitism is None else setup.elitism,
        refine=setup.refine,
        mating=setup.mating,
    )
