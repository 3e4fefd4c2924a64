"""Successive halving over a batch of training runs (multi-fidelity fitness).

Every run trains the first rung's epochs; the best `1/eta` (by the score after that
rung) go on to the next rung's epochs, and so on up to the full budget. Runs continue
where they stopped (`TrainingRun`), so a run that reaches the last rung ends exactly
as one uninterrupted `fit` would, and a run stopped earlier reports the best value of
its own trajectory so far: a pessimistic bound of its full-budget value, since more
epochs can only lower a best-so-far validation loss.

A run that raises (or could not be started: None) ranks last and stops; the others keep
the schedule they would have had, so one bad genome changes no other genome's value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from evotune.errors import UserError
from evotune.train.finetune import TrainingRun


def rungs(epochs: int, min_epochs: int, eta: int) -> list[int]:
    """Epoch budgets of the rungs: min_epochs, x eta, ..., up to `epochs` (the last)."""
    if epochs < 1 or min_epochs < 1 or eta < 2:
        raise ValueError(f"need epochs, min_epochs >= 1, eta >= 2; got {epochs, min_epochs, eta}")
    budgets = []
    budget = min(min_epochs, epochs)
    while budget < epochs:
        budgets.append(budget)
        budget *= eta
    return budgets + [epochs]


@dataclass(frozen=True)
class Reached:
    """How far a run went: its rung index and that rung's epoch budget."""

    rung: int
    budget: int
    complete: bool  # its value is the full-budget one (last rung, or stopped early)
    error: BaseException | None = None  # the run raised: it has no value


def successive_halving(
    runs: list[TrainingRun | BaseException],
    budgets: list[int],
    eta: int,
    score: Callable[[TrainingRun], float],
) -> list[Reached]:
    """Advance `runs` rung by rung, keeping the best ceil(n / eta) each time (lower
    `score` is better; NaN and failed runs rank last; ties go to the earlier run).
    Losers are released as soon as they drop out, so memory holds the optimizer state
    of survivors only. A run given as an exception failed to start."""
    failed = {i: r for i, r in enumerate(runs) if isinstance(r, BaseException)}
    reached = [Reached(0, 0, False, failed.get(i)) for i in range(len(runs))]
    alive = list(range(len(runs)))
    for level, budget in enumerate(budgets):
        last = level == len(budgets) - 1
        for i in (i for i in alive if i not in failed):
            run = runs[i]
            try:
                run.advance(budget)
            except UserError:
                raise
            except Exception as err:  # noqa: BLE001 - this genome fails, not the others
                failed[i] = err
                run.release()
            reached[i] = Reached(level, budget, last or run.stopped, failed.get(i))
        if last:
            break
        alive = _survivors(runs, alive, eta, score, failed)
    return reached


def _survivors(
    runs: list[TrainingRun | BaseException],
    alive: list[int],
    eta: int,
    score: Callable[[TrainingRun], float],
    failed: dict[int, BaseException],
) -> list[int]:
    def key(i: int) -> tuple[float, int]:
        value = math.nan if i in failed else score(runs[i])
        return (math.inf if math.isnan(value) else value, i)

    ranked = sorted(alive, key=key)
    keep = max(1, math.ceil(len(alive) / eta))
    for i in ranked[keep:]:
        if i not in failed:
            runs[i].release()
    return sorted(ranked[:keep])
