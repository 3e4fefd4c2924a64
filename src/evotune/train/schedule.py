"""How a task's genomes are trained for their fitness: the schedule (the full budget,
or successive halving over the generation) and repeats (k seeds per genome).

Shared by every task whose training is a `TrainingRun` (one that can continue where
it stopped): the task says how to start a genome's run (`start(genome, seed)` -> the
run and whatever the task keeps beside it) and how to rank runs (`score`, lower is
better); this module builds the runs (one genome's failure to start fails that genome
alone under halving), runs the rungs (`halving.py`) and says how far each got.

Repeats: a genome is trained from `repeats` seeds derived from its evaluation seed
(the first is the seed itself, so `repeats: 1` is the plain evaluation); its runs
advance together as one (`Repeated`), halving ranks genomes by their runs' mean score,
and the task reports the mean value with its standard deviation (`combine`).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from evotune.engine.problem import repeat_seeds
from evotune.engine.replay import mean_metrics, seed_spread
from evotune.errors import UserError
from evotune.sections import Section
from evotune.train.finetune import TrainingRun
from evotune.train.halving import Reached, rungs, successive_halving


class ScheduleFields(Section):
    """The fitness keys of a schedule, shared by the tasks that train `TrainingRun`s."""

    schedule: Literal["full", "successive_halving"] = "full"
    min_epochs: int = Field(1, ge=1, description="successive halving: first rung's epochs")
    eta: int = Field(3, ge=2, description="successive halving: keep 1/eta, epochs x eta")
    repeats: int = Field(
        1,
        ge=1,
        description="seeds per genome (derived from its evaluation seed): the "
        "fitness is their mean, metrics add fitness_std",
    )
    repeat: Literal["all", "elites"] = Field(
        "all",
        description="which genomes get the repeats: all (every evaluation), or elites "
        "(one seed each; a genome entering the GA's elites gets the other repeats - 1, "
        "once, at the full budget, and keeps their mean)",
    )

    @model_validator(mode="after")
    def _halving_keys_need_halving(self) -> ScheduleFields:
        # Compared with the default, not "was it set": a run's config.yaml lists every
        # key with its value and must validate again on resume.
        if self.schedule == "full":
            fields = type(self).model_fields
            changed = [k for k in ("min_epochs", "eta") if getattr(self, k) != fields[k].default]
            if changed:
                raise ValueError(
                    f"{' and '.join(changed)} appl{'y' if len(changed) > 1 else 'ies'} to "
                    "schedule: successive_halving only; "
                    "set schedule: successive_halving or remove them"
                )
        if self.repeat == "elites" and self.repeats < 2:
            raise ValueError("repeat: elites re-evaluates elites: set repeats: 2 or more")
        return self


Start = Callable[[np.ndarray, int], tuple[TrainingRun, Any]]


class Repeated:
    """A genome's runs (one per repeat seed), advanced, stopped and released as one."""

    def __init__(self, runs: list[TrainingRun]) -> None:
        self.runs = runs

    @property
    def stopped(self) -> bool:
        return all(run.stopped for run in self.runs)

    def advance(self, epochs: int) -> None:
        for run in self.runs:
            run.advance(epochs)

    def release(self) -> None:
        for run in self.runs:
            run.release()


@dataclass
class Outcome:
    """One genome's training: its runs (one per repeat), the task's own values from
    `start` (of the first run), how far it got, or the error that ended it."""

    runs: list[TrainingRun]
    extra: Any
    reached: Reached

    @property
    def error(self) -> BaseException | None:
        return self.reached.error


@dataclass(frozen=True)
class Schedule:
    epochs: int  # the full budget
    budgets: list[int] | None  # successive halving's rungs; None: the full budget
    eta: int
    repeats: int = 1  # seeds per evaluation
    confirmations: int = 0  # repeat: elites: further evaluations of a kept genome

    @classmethod
    def of(cls, fitness: Any) -> Schedule:
        """From a task's fitness section (`epochs`, `schedule`, `min_epochs`, `eta`,
        `repeats`, `repeat`)."""
        halving = fitness.schedule == "successive_halving"
        budgets = rungs(fitness.epochs, fitness.min_epochs, fitness.eta) if halving else None
        repeats = getattr(fitness, "repeats", 1)
        if getattr(fitness, "repeat", "all") == "elites":  # the engine confirms the elites
            return cls(fitness.epochs, budgets, fitness.eta, 1, repeats - 1)
        return cls(fitness.epochs, budgets, fitness.eta, repeats)

    @property
    def halving(self) -> bool:
        return self.budgets is not None

    def train(
        self,
        start: Start,
        genomes: np.ndarray,
        seeds: np.ndarray,
        score: Callable[[TrainingRun], float],
    ) -> list[Outcome]:
        """Train every genome under the schedule. The full budget trains genome by
        genome (an error propagates: the executor's guard records it); halving ranks
        them all together, isolating a genome's failure."""
        if not self.halving:
            return [self._full(start, g, int(s)) for g, s in zip(genomes, seeds)]
        started = [self._start(start, g, int(s), isolate=True) for g, s in zip(genomes, seeds)]
        groups = [group if isinstance(group, BaseException) else group[0] for group in started]

        def mean_score(group: Repeated) -> float:
            return float(np.mean([score(run) for run in group.runs]))

        reached = successive_halving(groups, self.budgets, self.eta, mean_score)
        return [
            Outcome([], None, where) if isinstance(item, BaseException)
            else Outcome(item[0].runs, item[1], where)
            for item, where in zip(started, reached)
        ]  # fmt: skip

    def _full(self, start: Start, genome: np.ndarray, seed: int) -> Outcome:
        group, extra = self._start(start, genome, seed, isolate=False)
        group.advance(self.epochs)
        return Outcome(group.runs, extra, Reached(0, self.epochs, True))

    def _start(
        self, start: Start, genome: np.ndarray, seed: int, isolate: bool
    ) -> tuple[Repeated, Any] | BaseException:
        try:
            pairs = [start(genome, s) for s in repeat_seeds(seed, self.repeats)]
        except UserError:
            raise
        except Exception as err:  # noqa: BLE001 - recorded as this genome's failure
            if not isolate:
                raise
            return err
        return Repeated([run for run, _ in pairs]), pairs[0][1]

    def metrics(self, where: Reached, runs: list[TrainingRun]) -> dict[str, Any]:
        """What the schedule adds to a journal line: `fidelity` (1.0: the full-budget
        value), `rung` under halving, and the epochs all repeats trained."""
        fidelity = 1.0 if where.complete else where.budget / self.epochs
        out: dict[str, Any] = {
            "fidelity": round(fidelity, 6),
            "epochs_trained": sum(run.epochs_run for run in runs),
        }
        if self.halving:
            out["rung"] = where.rung
        return out


def full_budget_view(task: Any) -> Any:
    """A shallow copy of `task` (same data, template, caches) whose schedule trains every
    genome the full budget, one genome per call: what a baseline candidate or an elite's
    confirmation is evaluated with under successive halving."""
    view = copy.copy(task)
    view.schedule = dataclasses.replace(task.schedule, budgets=None)
    view.whole_generation, view.genomes_per_call = False, 1
    return view


class Scheduled:
    """What a task trained under a `Schedule` (its `schedule` attribute) offers the
    engine for `repeat: elites`."""

    schedule: Schedule

    @property
    def confirmations(self) -> int:
        """Further evaluations of a genome entering the elites (`repeat: elites`)."""
        return self.schedule.confirmations

    def at_full_budget(self) -> Any:
        """The view that confirms elites: genome by genome, the full budget."""
        return full_budget_view(self) if self.schedule.halving else self


def combine(rows: list[dict[str, Any]], objective: str) -> dict[str, Any]:
    """One genome's metrics from its repeats' rows: each number's mean, and the first
    objective's standard deviation across seeds as `fitness_std` (one row: itself)."""
    if len(rows) == 1:
        return dict(rows[0])
    out = mean_metrics(rows)
    out["fitness_std"] = seed_spread([float(row[objective]) for row in rows])
    out["repeats"] = len(rows)
    return out
