"""Model-agnostic evolution: genome spaces, operators, algorithms and the run loop.

Nothing here imports torch models or data; tasks plug in through `problem.Problem`.
Importing the package registers every algorithm in `ALGORITHMS` (Optuna itself is
imported only when one of its samplers is built)."""

from evotune.engine import annealing, ga, nsga2, optuna_search  # noqa: F401  (registers)
from evotune.engine.algorithm import ALGORITHMS

__all__ = ["ALGORITHMS"]
