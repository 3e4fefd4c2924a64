"""Ray executor: evaluations run as Ray tasks on a local Ray instance or a cluster.

Ray is imported only when this executor is built (`pip install 'evotune[ray]'`).
- The task object (with whatever large inputs it holds: datasets, cached features,
  pretrained weights) is put into Ray's object store once per run; each worker process
  fetches and deserialises it once and keeps it for the following evaluations.
- Genomes travel in chunks, one chunk per Ray task; results are yielded as each task
  finishes (`ray.wait`), so the driver journals them at once.
- A worker process that dies mid-task is Ray's business: the task is retried
  (`max_retries`). What the evaluation itself raises is caught in the worker
  (`guard.evaluate_guarded`) and comes back as a failed Evaluation.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from evotune.engine.problem import Evaluation, Problem
from evotune.errors import UserError
from evotune.executors.guard import describe, evaluate_guarded, failed
from evotune.executors.local import chunk_size
from evotune.usercode import file_modules

INSTALL_HINT = "pip install 'evotune[ray]'"


def import_ray() -> Any:
    """The `ray` module, or a UserError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError(
            f"executor.kind: ray needs Ray, which is not installed: {INSTALL_HINT}"
        ) from None
    return ray


class RayExecutor:
    """Evaluates chunks of genomes as Ray tasks, each reserving `num_cpus` CPUs and
    `num_gpus` GPUs (fractions allowed: 0.5 runs two evaluations per GPU).

    Genomes per task: `chunk_size`, else the task's own `genomes_per_call`, else the
    generation split evenly over the evaluations the cluster can run at once; a
    whole-generation task (successive halving) always gets the generation in one task."""

    def __init__(
        self,
        *,
        address: str | None = None,
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        max_in_flight: int | None = None,
        max_retries: int = 3,
        chunk_size: int | None = None,
    ) -> None:
        self.ray = import_ray()
        connect(self.ray, address)
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        self.max_in_flight, self.chunk_size = max_in_flight, chunk_size
        # Options given to ray.remote itself (not .options()), so that GPU tasks keep
        # Ray's default of a fresh worker per task, which releases GPU memory for sure.
        self.remote = self.ray.remote(
            num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries
        )(evaluate_chunk)
        self._shared: list[tuple[Problem, Any]] = []  # (task or view, its ObjectRef)

    def map(
        self, problem: Problem, genomes: np.ndarray, seeds: np.ndarray
    ) -> Iterator[tuple[np.ndarray, list[Evaluation], float]]:
        waiting = self.chunks(problem, len(genomes))
        limit = self.max_in_flight or len(waiting)
        box = [self.share(problem)]  # in a list: Ray passes the ref, not the fetched task
        running: dict[Any, np.ndarray] = {}
        try:
            while waiting or running:
                while waiting and len(running) < limit:
                    chunk = waiting.pop(0)
                    running[self.remote.remote(box, genomes[chunk], seeds[chunk])] = chunk
                ready, _ = self.ray.wait(list(running), num_returns=1)
                chunk = running.pop(ready[0])
                yield chunk, *self.collect(problem, ready[0], len(chunk))
        finally:  # the loop stopped early (failure stop, interrupt): free the cluster
            for ref in running:
                self.ray.cancel(ref)

    def chunks(self, problem: Problem, count: int) -> list[np.ndarray]:
        """Indices of the genomes of each Ray task."""
        slots = min(self.slots(), self.max_in_flight or count)
        size = chunk_size(problem, count, self.chunk_size, math.ceil(count / slots))
        return [np.arange(start, min(start + size, count)) for start in range(0, count, size)]

    def share(self, problem: Problem) -> Any:
        """The task's ObjectRef: put into the object store once per run (per view: the
        task, its full-budget view for `repeat: elites`, a baseline's)."""
        known = next((ref for p, ref in self._shared if p is problem), None)
        if known is None:
            import ray.cloudpickle

            # modules run from a config's file (python: backbones) have made-up names
            # that workers cannot import: their classes travel by value
            for module in file_modules():
                ray.cloudpickle.register_pickle_by_value(module)
            known = self.ray.put(problem)
            self._shared = [*self._shared[-3:], (problem, known)]  # a few views at most
        return known

    def slots(self) -> int:
        """How many evaluations the cluster can run at once (at least 1)."""
        total = self.ray.cluster_resources()
        counts = []
        for name, need in (("CPU", self.num_cpus), ("GPU", self.num_gpus)):
            if need > 0:
                have = total.get(name, 0.0)
                if have < need:
                    raise UserError(
                        f"executor.num_{name.lower()}s: {need} per evaluation, but the Ray "
                        f"cluster has {have:g} {name}s; lower it or add nodes"
                    )
                counts.append(int(have // need))
        return max(1, min(counts, default=1))

    def collect(self, problem: Problem, ref: Any, count: int) -> tuple[list[Evaluation], float]:
        """(evaluations, seconds per genome) of a finished task; a task Ray gave up on
        (its worker died more than max_retries times, its node was lost) fails its genomes."""
        try:
            results, seconds = self.ray.get(ref)
            return results, seconds / count
        except self.ray.exceptions.RayTaskError as err:
            if isinstance(err.cause, UserError):
                raise err.cause from None
            error = describe(err.cause) if err.cause is not None else _first_line(err)
        except self.ray.exceptions.RayError as err:
            error = _first_line(err)
        return [failed(problem, error) for _ in range(count)], 0.0


def connect(ray: Any, address: str | None) -> None:
    """Start a local Ray instance (address empty) or join a cluster; reuse a connection
    already made in this process (a notebook, a test fixture)."""
    if ray.is_initialized():
        return
    quiet = {"logging_level": logging.WARNING}
    try:
        if address:
            ray.init(address=address, **quiet)
        else:  # "local": a new instance even if a cluster runs here (that is `auto`)
            ray.init(address="local", include_dashboard=False, **quiet)
    except (ConnectionError, ValueError) as err:
        raise UserError(
            f"executor.address: cannot connect to Ray at {address!r}: {_first_line(err)}"
        ) from None


# ---- in the worker ------------------------------------------------------------------

_TASKS: dict[str, Problem] = {}  # this worker's copy of the run's task, by ObjectRef


def evaluate_chunk(
    box: list[Any], genomes: np.ndarray, seeds: np.ndarray
) -> tuple[list[Evaluation], float]:
    """Runs in a Ray worker: evaluate one chunk; returns (evaluations, seconds)."""
    problem = _task(box[0])
    began = time.perf_counter()
    results = evaluate_guarded(problem, genomes, seeds)
    return results, time.perf_counter() - began


def _task(ref: Any) -> Problem:
    """The task behind `ref`, fetched once per worker process (then kept: the next
    chunk of the same run finds it deserialised already)."""
    key = ref.hex()
    if key not in _TASKS:
        import ray

        _TASKS.clear()  # one run at a time per worker: drop an earlier run's task
        task = ray.get(ref)
        getattr(task, "setup_process", lambda: None)()  # threads as in the driver
        _TASKS[key] = task
    return _TASKS[key]


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": ")
