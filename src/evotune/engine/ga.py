"""Single-objective genetic algorithm: selection, crossover, mutation, elitism."""

from __future__ import annotations

import numpy as np

from evotune.engine.algorithm import BreedingAlgorithm, Selection, Variation, sort_by_loss
from evotune.engine.spaces import Space


class GeneticAlgorithm(BreedingAlgorithm):
    """Generational GA. Each generation keeps the best `elitism` members unchanged and
    breeds `population - elitism` children; elites are not re-evaluated.

    With truncation(0.5), elitism = population/2, sequential crossover and seed_flip
    mutation this is SEEDS.md §1's scheme ("winners + children").
    """

    name = "ga"

    def __init__(
        self,
        space: Space,
        rng: np.random.Generator,
        population: int,
        selection: Selection,
        crossover: Variation,
        mutation: Variation,
        elitism: int = 1,
    ) -> None:
        super().__init__(space, rng, population, selection, crossover, mutation)
        if not 0 <= elitism < population:
            raise ValueError(f"elitism must be in [0, population), got {elitism}")
        self.elitism = elitism

    def ask(self) -> np.ndarray:
        if self.genomes is None:
            return self.space.sample(self.population_size, self.rng)
        return self.breed(self.losses[:, 0], self.population_size - self.elitism)

    def tell(self, genomes: np.ndarray, losses: np.ndarray) -> None:
        if self.genomes is not None and self.elitism:
            genomes = np.concatenate([self.genomes[: self.elitism], genomes])
            losses = np.concatenate([self.losses[: self.elitism], losses])
        self.genomes, self.losses = sort_by_loss(genomes, losses)
