"""Optuna's samplers (TPE, NSGA-II) behind evotune's ask/tell, on the same spaces,
budgets and seeds as the other algorithms (the optional extra `optuna`).

State stays portable: the algorithm keeps the history of told genomes and losses as
arrays, and every `ask` rebuilds an in-memory study from it with a sampler seeded from
the run's generator. A resumed run therefore asks exactly what the uninterrupted one
asked, with no pickled study. Rebuilding costs milliseconds per hundred trials.

Genes map to Optuna distributions: log-scaled reals to `FloatDistribution(log=True)`,
integers to `IntDistribution`, choices to `CategoricalDistribution`; binary genes to
0/1 integers. Optuna sees only valid genomes: asked ones are repaired by the space
(e.g. a constraint between genes) before evaluation, and the study is rebuilt from
what was evaluated.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from evotune.engine.algorithm import ALGORITHMS, Algorithm, AlgorithmSetup
from evotune.engine.spaces import Choice, Int, MixedSpace, Real, Space
from evotune.errors import UserError

SAMPLERS = ("tpe", "optuna_nsga2")


def import_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise UserError(
            "search.algorithm: tpe and optuna_nsga2 need Optuna; install it with "
            "pip install 'evotune[optuna]' (or pip install optuna)"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


class OptunaSearch(Algorithm):
    """Batched Optuna sampling: each generation asks `population` trials at once.

    `sampler`: "tpe" (constant liar on, so a batch spreads out) or "optuna_nsga2"
    (population = this population). The population is the best members so far.
    """

    multi_objective = True

    def __init__(
        self, space: Space, rng: np.random.Generator, population: int, sampler: str
    ) -> None:
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        super().__init__(space, rng, population)
        self.optuna = import_optuna()
        self.name = sampler
        self.distributions = distributions(space, self.optuna)
        self.history: np.ndarray | None = None  # told genomes
        self.history_losses: np.ndarray | None = None
        self.history_generation: np.ndarray | None = None
        self.generation = 0

    def ask(self) -> np.ndarray:
        study = self._study()
        trials = [study.ask(self.distributions) for _ in range(self.population_size)]
        rows = [self._genome(t.params) for t in trials]
        return self.space.repair(np.array(rows))

    def tell(self, genomes: np.ndarray, losses: np.ndarray) -> None:
        generation = np.full(len(genomes), self.generation)
        self.history = _stack(self.history, genomes)
        self.history_losses = _stack(self.history_losses, losses)
        self.history_generation = _stack(self.history_generation, generation)
        self.generation += 1
        self._keep_best(genomes, losses)

    def _sampler(self) -> Any:
        seed = int(self.rng.integers(0, 2**31 - 1))
        samplers = self.optuna.samplers
        if self.name == "tpe":
            return samplers.TPESampler(seed=seed, constant_liar=True)
        return samplers.NSGAIISampler(population_size=self.population_size, seed=seed)

    def _study(self) -> Any:
        """A fresh study holding every finite told trial, with a freshly seeded sampler."""
        sampler = self._sampler()
        n_objectives = 1 if self.history_losses is None else self.history_losses.shape[1]
        study = self.optuna.create_study(directions=["minimize"] * n_objectives, sampler=sampler)
        if self.history is None:
            return study
        key = f"{type(sampler).__name__}:generation"  # Optuna's GA samplers count by it
        for genome, loss, gen in zip(self.history, self.history_losses, self.history_generation):
            if not np.all(np.isfinite(loss)):
                continue  # failed evaluations: Optuna ignores failed trials anyway
            trial = self.optuna.trial.create_trial(
                params=self._params(genome),
                distributions=self.distributions,
                values=[float(v) for v in loss],
                system_attrs={key: int(gen)},
            )
            study.add_trial(trial)
        return study

    def _params(self, genome: np.ndarray) -> dict[str, Any]:
        return to_params(self.space, genome, self.distributions)

    def _genome(self, params: dict[str, Any]) -> np.ndarray:
        return from_params(self.space, params)

    def state_dict(self) -> dict[str, np.ndarray]:
        state = super().state_dict()
        if self.history is not None:
            state |= {
                "history": self.history,
                "history_losses": self.history_losses,
                "history_generation": self.history_generation,
                "generation": np.array(self.generation),
            }
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        super().load_state_dict(state)
        if "history" in state:
            self.history = state["history"]
            self.history_losses = state["history_losses"]
            self.history_generation = state["history_generation"]
            self.generation = int(state["generation"])


def _stack(old: np.ndarray | None, new: np.ndarray) -> np.ndarray:
    return new.copy() if old is None else np.concatenate([old, new])


def _names(space: Space) -> list[str]:
    if isinstance(space, MixedSpace):
        return [g.name for g in space.genes]
    return [f"g{i}" for i in range(space.n_genes)]


def distributions(space: Space, optuna: Any) -> dict[str, Any]:
    """One Optuna distribution per gene (finite bounds needed for real vectors)."""
    dist = optuna.distributions
    if isinstance(space, MixedSpace):
        out = {}
        for g in space.genes:
            if isinstance(g, Choice):
                out[g.name] = dist.CategoricalDistribution(list(g.options))
            elif isinstance(g, Int):
                out[g.name] = dist.IntDistribution(int(g.low), int(g.high))
            else:
                out[g.name] = dist.FloatDistribution(float(g.low), float(g.high), log=g.log)
        return out
    lower, upper = space.lower, space.upper
    if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))):
        raise UserError("search.algorithm: Optuna's samplers need finite gene bounds")
    if space.kind == "binary":
        return {n: dist.IntDistribution(int(lo), int(hi)) for n, lo, hi in _rows(space)}
    return {n: dist.FloatDistribution(float(lo), float(hi)) for n, lo, hi in _rows(space)}


def _rows(space: Space) -> zip:
    return zip(_names(space), space.lower, space.upper)


def to_params(space: Space, genome: np.ndarray, dists: dict[str, Any]) -> dict[str, Any]:
    """A genome as Optuna parameter values, clipped into the distributions (a log gene
    stored as log10 may come back a rounding error outside its range)."""
    if isinstance(space, MixedSpace):
        values = space.decode(genome)
    else:
        values = {n: v.item() for n, v in zip(_names(space), np.asarray(genome))}
    out = {}
    for name, value in values.items():
        d = dists[name]
        if hasattr(d, "low"):
            value = min(max(value, d.low), d.high)
            value = int(round(value)) if isinstance(d.low, int) else float(value)
        out[name] = value
    return out


def from_params(space: Space, params: dict[str, Any]) -> np.ndarray:
    """Optuna parameter values as a genome row (stored coordinates)."""
    if isinstance(space, MixedSpace):
        row = []
        for g in space.genes:
            v = params[g.name]
            if isinstance(g, Choice):
                row.append(float(g.options.index(v)))
            elif isinstance(g, Real) and g.log:
                row.append(math.log10(v))
            else:
                row.append(float(v))
        return np.array(row)
    return np.array([params[n] for n in _names(space)], dtype=float)


@ALGORITHMS.register("tpe", traits={"objectives": "many"})
def build_tpe(setup: AlgorithmSetup) -> OptunaSearch:
    """Optuna's TPE sampler (pip install 'evotune[optuna]')."""
    return OptunaSearch(setup.space, setup.rng, setup.population, sampler="tpe")


@ALGORITHMS.register("optuna_nsga2", traits={"objectives": "many"})
def build_optuna_nsga2(setup: AlgorithmSetup) -> OptunaSearch:
    """Optuna's NSGA-II sampler (pip install 'evotune[optuna]')."""
    return OptunaSearch(setup.space, setup.rng, setup.population, sampler="optuna_nsga2")
