"""Successive halving's schedule, with runs whose value after e epochs is known."""

from __future__ import annotations

import pytest

from evotune.errors import UserError
from evotune.train.halving import rungs, successive_halving


class ScriptedRun:
    """A training run whose score is `quality / epochs`; it raises at `fail_at` epochs."""

    def __init__(self, quality: float, fail_at: int | None = None) -> None:
        self.quality, self.fail_at = quality, fail_at
        self.epochs, self.stopped, self.released = 0, False, False

    def advance(self, epochs: int) -> None:
        if self.fail_at is not None and epochs >= self.fail_at:
            raise FloatingPointError("loss is NaN")
        self.epochs = epochs

    def release(self) -> None:
        self.released = self.stopped = True


def score(run: ScriptedRun) -> float:
    return run.quality / max(run.epochs, 1)


def test_rungs_multiply_by_eta_up_to_the_full_budget():
    assert rungs(9, 1, 3) == [1, 3, 9]
    assert rungs(10, 1, 3) == [1, 3, 9, 10]


def test_a_failing_run_ranks_last_and_the_others_keep_their_schedule():
    qualities = [5.0, 1.0, 3.0, 2.0, 4.0, 6.0]
    clean = [ScriptedRun(q) for q in qualities]
    baseline = successive_halving(clean, [1, 2, 4], 2, score)
    # run 1 (the best) fails in its second rung: it drops out like a NaN score
    faulty = [ScriptedRun(q, fail_at=2 if i == 1 else None) for i, q in enumerate(qualities)]
    reached = successive_halving(faulty, [1, 2, 4], 2, score)
    assert isinstance(reached[1].error, FloatingPointError) and faulty[1].released
    assert [r.error for i, r in enumerate(reached) if i != 1] == [None] * 5
    assert [r.budget for r in baseline] == [1, 4, 2, 4, 1, 1]
    # the same number of survivors per rung: the next best takes the failed run's place
    assert [r.budget for r in reached] == [1, 2, 4, 4, 1, 1]


def test_a_run_that_could_not_start_is_a_failure_from_the_first_rung():
    runs = [ScriptedRun(1.0), RuntimeError("no memory for the net"), ScriptedRun(2.0)]
    reached = successive_halving(runs, [1, 3], 3, score)
    assert isinstance(reached[1].error, RuntimeError) and reached[1].budget == 0
    assert [r.budget for r in reached] == [3, 0, 1]


def test_bad_input_is_not_a_failed_run():
    class BadInput(ScriptedRun):
        def advance(self, epochs: int) -> None:
            raise UserError("data: broken")

    with pytest.raises(UserError):
        successive_halving([ScriptedRun(1.0), BadInput(2.0)], [1, 2], 2, score)
