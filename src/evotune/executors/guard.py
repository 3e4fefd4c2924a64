"""Evaluation that never takes the run down: what a task raises becomes a failed result.

Both executors call `evaluate_guarded` where the task runs (in this process, or in a Ray
worker), so an out-of-memory error, a NaN check or a bug in a user's module costs one
evaluation, not the run. `UserError` still propagates: bad input is not a bad genome.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import numpy as np

from evotune.engine.problem import Evaluation, Problem, is_whole_generation
from evotune.errors import UserError

MAX_MESSAGE = 500  # characters of an exception's message kept in the journal
OUT_OF_MEMORY = (
    "out of GPU memory: lower fitness.batch_size, task.batch (genomes trained together), "
    "fitness.cache_gb, or use fitness.precision: bf16"
)


def evaluate_guarded(problem: Problem, genomes: np.ndarray, seeds: np.ndarray) -> list[Evaluation]:
    """`problem.evaluate`, one Evaluation per genome whatever happens. A batch that raises
    is evaluated again one genome at a time, so one bad genome does not fail the others
    (and a batch too large for memory may still pass piece by piece). Not so for a
    whole-generation task: alone, a genome would get another schedule (successive
    halving would give it the full budget), so the whole batch fails and is retried in
    a later generation or on resume; such a task isolates its genomes' failures itself."""
    try:
        return checked(problem, len(genomes), problem.evaluate(genomes, seeds))
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure of the task is recorded
        if out_of_memory(err):
            _release_gpu_memory()  # what the failed evaluation held, before the next one
        if len(genomes) == 1 or is_whole_generation(problem):
            return [failed(problem, describe(err)) for _ in genomes]
    return [
        evaluate_guarded(problem, genomes[i : i + 1], seeds[i : i + 1])[0]
        for i in range(len(genomes))
    ]


def checked(problem: Problem, count: int, results: list[Evaluation]) -> list[Evaluation]:
    """The task's results, if there is one per genome with one value per objective."""
    if len(results) != count:
        raise RuntimeError(f"the task returned {len(results)} evaluations for {count} genomes")
    expected = len(problem.objectives)
    for result in results:
        if len(result.fitness) != expected:
            raise RuntimeError(
                f"the task returned {len(result.fitness)} fitness values, expected {expected} "
                f"({', '.join(o.name for o in problem.objectives)})"
            )
    return results


def failed(problem: Problem, error: str) -> Evaluation:
    """The worst result: NaN in every objective (algorithms see +inf loss)."""
    return Evaluation(tuple(float("nan") for _ in problem.objectives), {}, error=error)


def describe(err: BaseException) -> str:
    """'<type>: <message> (file.py:line in function)', the place being where it was raised."""
    message = " ".join(str(err).split())[:MAX_MESSAGE]
    text = f"{type(err).__name__}: {message}" if message else type(err).__name__
    if out_of_memory(err):
        text = f"{OUT_OF_MEMORY} ({text})"
    frames = traceback.extract_tb(err.__traceback__) if err.__traceback__ else []
    if frames:
        last = frames[-1]
        text += f" ({Path(last.filename).name}:{last.lineno} in {last.name})"
    return text


def out_of_memory(err: BaseException) -> bool:
    """Whether `err` is torch's out-of-memory error (a CUDA allocation that failed).
    Only a task that loaded torch can raise one: the toy task runs without it."""
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(err, oom)


def _release_gpu_memory() -> None:
    torch = sys.modules["torch"]
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
