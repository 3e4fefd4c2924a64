"""Simulated annealing and random search: baselines to compare the GA with (SEEDS.md §2
suggests annealing as the comparison)."""

from __future__ import annotations

import math

import numpy as np

from evotune.engine.algorithm import ALGORITHMS, Algorithm, AlgorithmSetup, Variation
from evotune.engine.spaces import Space


class SimulatedAnnealing(Algorithm):
    """Batched simulated annealing on the first objective.

    Each step proposes `population` neighbours of the current genome (by the mutation
    operator) and moves to the best of them by the Metropolis rule at temperature
    T = T0 x cooling^step. T0 defaults to the spread of the first batch's losses.
    """

    name = "annealing"

    def __init__(
        self,
        space: Space,
        rng: np.random.Generator,
        population: int,
        mutation: Variation,
        temperature: float | None = None,
        cooling: float = 0.95,
    ) -> None:
        super().__init__(space, rng, population)
        self.mutation = mutation
        self.t0 = temperature
        self.cooling = cooling
        self.step = 0
        self.current: np.ndarray | None = None
        self.current_loss = math.inf

    def ask(self) -> np.ndarray:
        if self.current is None:
            return self.space.sample(self.population_size, self.rng)
        neighbours = np.repeat(self.current[None, :], self.population_size, axis=0)
        return self.space.repair(self.mutation(neighbours, self.rng, self.space))

    def tell(self, genomes: np.ndarray, losses: np.ndarray) -> None:
        best = int(np.argmin(losses[:, 0]))
        if self.current is None:
            finite = losses[np.isfinite(losses[:, 0]), 0]
            spread = float(np.std(finite)) if len(finite) > 1 else 0.0
            self.t0 = self.t0 if self.t0 is not None else (spread or 1.0)
            self._move(genomes[best], losses[best, 0])
        else:
            self._metropolis(genomes[best], float(losses[best, 0]))
        self.step += 1
        self._keep_best(genomes, losses)

    def temperature(self) -> float:
        return float(self.t0 or 1.0) * self.cooling**self.step

    def _metropolis(self, candidate: np.ndarray, loss: float) -> None:
        delta = loss - self.current_loss
        accept_p = math.exp(-delta / self.temperature()) if delta > 0 else 1.0
        if self.rng.random() < accept_p:
            self._move(candidate, loss)

    def _move(self, genome: np.ndarray, loss: float) -> None:
        self.current, self.current_loss = genome.copy(), float(loss)

    def state_dict(self) -> dict[str, np.ndarray]:
        state = super().state_dict()
        if self.current is not None:
            state |= {
                "current": self.current,
                "current_loss": np.array(self.current_loss),
                "step": np.array(self.step),
                "t0": np.array(self.t0),
            }
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        super().load_state_dict(state)
        if "current" in state:
            self.current = state["current"]
            self.current_loss = float(state["current_loss"])
            self.step = int(state["step"])
            self.t0 = float(state["t0"])


class RandomSearch(Algorithm):
    """Independent random genomes each generation; the population is the best so far."""

    name = "random"

    def ask(self) -> np.ndarray:
        return self.space.sample(self.population_size, self.rng)

    def tell(self, genomes: np.ndarray, losses: np.ndarray) -> None:
        self._keep_best(genomes, losses)


@ALGORITHMS.register("annealing", traits={"objectives": "one"})
def build_annealing(setup: AlgorithmSetup) -> SimulatedAnnealing:
    """Simulated annealing: `population` neighbours per step by the mutation operator."""
    return SimulatedAnnealing(
        setup.space,
        setup.rng,
        setup.population,
        setup.mutation,
        temperature=setup.temperature,
        cooling=setup.cooling,
    )


@ALGORITHMS.register("random", traits={"objectives": "one"})
def build_random(setup: AlgorithmSetup) -> RandomSearch:
    """Random search: `population` new genomes per generation, the best kept."""
    return RandomSearch(setup.space, setup.rng, setup.population)
