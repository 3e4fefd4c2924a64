"""In-process executor: the task evaluates batches one after another."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from evotune.engine.problem import Evaluation, Problem, is_whole_generation
from evotune.executors.guard import evaluate_guarded


class LocalExecutor:
    """Evaluates genomes in chunks of `chunk_size` (default: the task's own preference,
    else all at once), so the journal and the progress bar advance chunk by chunk.
    An evaluation that raises comes back as a failed Evaluation (see `guard`)."""

    def __init__(self, chunk_size: int | None = None) -> None:
        self.chunk_size = chunk_size

    def map(
        self, problem: Problem, genomes: np.ndarray, seeds: np.ndarray
    ) -> Iterator[tuple[np.ndarray, list[Evaluation], float]]:
        size = chunk_size(problem, len(genomes), self.chunk_size)
        for start in range(0, len(genomes), size):
            chunk = np.arange(start, min(start + size, len(genomes)))
            began = time.perf_counter()
            results = evaluate_guarded(problem, genomes[chunk], seeds[chunk])
            yield chunk, results, (time.perf_counter() - began) / len(chunk)


def chunk_size(
    problem: Problem, count: int, configured: int | None, default: int | None = None
) -> int:
    """Genomes per evaluate() call: all of them for a whole-generation task, else the
    configured chunk, the task's preference, `default` (the executor's), or all."""
    if is_whole_generation(problem):
        return max(1, count)
    return configured or problem.genomes_per_call or default or max(1, count)
