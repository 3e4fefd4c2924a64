"""What the engine needs from a task: a genome space, objectives and a batched fitness."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from evotune.engine.spaces import Space


@dataclass(frozen=True)
class Objective:
    """One fitness component, in its natural units (accuracy is maximised, size minimised)."""

    name: str
    direction: Literal["max", "min"]

    def better(self, a: float, b: float) -> bool:
        return a > b if self.direction == "max" else a < b


@dataclass
class Evaluation:
    """The outcome of evaluating one genome. A failed evaluation has NaN fitness and
    `error` set to "<type>: <message>"; the loop journals it and does not cache it."""

    fitness: tuple[float, ...]
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class Problem(Protocol):
    """A task as the engine sees it. `evaluate` receives a batch of genomes and one seed
    per genome (derived from the run seed and the genome's hash) and returns one
    `Evaluation` per genome, in order.

    `genomes_per_call` is the task's preferred chunk (None: any size; executors split a
    generation over their workers). `whole_generation` says a genome's result depends on
    the others of its call (successive halving ranks them): every executor then passes
    a generation's new genomes in one call, and never splits it.

    Optional: `confirmations` (default 0) is how many further evaluations, from seeds
    derived from its own (`repeat_seeds`), a genome gets once it enters the algorithm's
    kept set (`fitness.repeat: elites`); its fitness is then their mean. `at_full_budget()`
    returns the problem that evaluates them genome by genome at the full budget (a
    multi-fidelity task's view without halving; default: the problem itself)."""

    space: Space
    objectives: tuple[Objective, ...]
    genomes_per_call: int | None
    whole_generation: bool

    def evaluate(self, genomes: np.ndarray, seeds: np.ndarray) -> list[Evaluation]: ...

    def reference_point(self) -> tuple[float, ...] | None:
        """Hypervolume reference point in natural units, or None to derive one."""
        ...


def is_whole_generation(problem: Problem) -> bool:
    """Whether `problem` needs a generation's new genomes in one call (a problem that
    does not say, e.g. a user's duck-typed one, does not)."""
    return bool(getattr(problem, "whole_generation", False))


def losses_of(objectives: tuple[Objective, ...], fitness: np.ndarray) -> np.ndarray:
    """Fitness rows (natural units) -> loss rows (lower is better, NaN -> inf)."""
    fitness = np.atleast_2d(np.asarray(fitness, dtype=float))
    signs = np.array([-1.0 if o.direction == "max" else 1.0 for o in objectives])
    losses = fitness * signs
    return np.where(np.isnan(losses), np.inf, losses)


def evaluation_seed(run_seed: int, genome_hash: str) -> int:
    """A genome's evaluation seed: independent of evaluation order, executor and resume."""
    return (int(run_seed) * 0x9E3779B97F4A7C15 + int(genome_hash, 16)) % (2**63)


def repeat_seeds(seed: int, repeats: int) -> list[int]:
    """`repeats` seeds derived from a genome's evaluation seed (the first is itself)."""
    return [int(seed)] + [
        (int(seed) * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019 * i) % (2**63)
        for i in range(1, repeats)
    ]


def confirmations_of(problem: Problem) -> int:
    """Further evaluations a kept genome gets (0: none; a duck-typed problem says none)."""
    return int(getattr(problem, "confirmations", 0) or 0)


def at_full_budget(problem: Problem) -> Problem:
    """The problem that evaluates confirmations genome by genome at the full budget."""
    view = getattr(problem, "at_full_budget", None)
    return problem if view is None else view()
