"""In-process executor: the task evaluates batches one after another."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from evotune.engine.problem import Evaluation, Problem
from evotune.executors.guard import evaluate_guarded


class LocalExecutor:
    """Evaluates genomes in chunks of `batch_size` (default: the task's own preference,
    else all at once), so the journal and the progress bar advance chunk by chunk.
    An evaluation that raises comes back as a failed Evaluation (see `guard`)."""

    def __init__(self, batch_size: int | None = None) -> None:
        self.batch_size = batch_size

    def map(
        self, problem: Problem, genomes: np.ndarray, seeds: np.ndarray
    ) -> Iterator[tuple[np.ndarray, list[Evaluation], float]]:
        size = self.batch_size or problem.batch_size or len(genomes)
        for start in range(0, len(genomes), size):
            chunk = np.arange(start, min(start + size, len(genomes)))
            began = time.perf_counter()
            results = evaluate_guarded(problem, genomes[chunk], seeds[chunk])
            yield chunk, results, (time.perf_counter() - began) / len(chunk)
