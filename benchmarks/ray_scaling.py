"""The same search with the local executor and with Ray, on this machine's cores.

Random search over OneMax (length 100, population 16: every genome is new), 64
evaluations, through the full run loop (journal, cache, checkpoints). Each evaluation
does a fixed amount of work:
- `none`: nothing: what is left is the executor's own cost per evaluation;
- `sleep`: time.sleep, like an evaluation that waits on a GPU or on I/O;
- `spin`: pure-Python arithmetic on one core, like CPU-bound training.
Both run one genome per call (`chunk_size 1`: a journal fsync per evaluation) and, for
comparison, their default (`chunk_size null`): local evaluates a generation at once, Ray
splits it evenly over the cluster's slots. Also measured: ray.init, the first run
(workers start and import evotune), and a task carrying 256 MB of data (put once).

    python benchmarks/ray_scaling.py [--work 0.1] [--repeats 3] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from evotune.engine.annealing import RandomSearch
from evotune.engine.loop import SearchLoop, StopRules
from evotune.engine.problem import Evaluation
from evotune.executors import LocalExecutor
from evotune.tasks.toy import OneMax

EVALUATIONS, POPULATION, LENGTH = 64, 16, 100


class Busy(OneMax):
    """OneMax whose evaluation first sleeps or spins for `work` seconds per genome.
    Defined in __main__, so Ray ships the class by value: workers need nothing extra."""

    def __init__(self, mode: str, work: float, payload_mb: int = 0) -> None:
        super().__init__(LENGTH)
        self.mode, self.work = mode, work
        self.payload = np.ones(payload_mb * 2**20 // 8)  # shared input, like cached features

    def evaluate(self, genomes: np.ndarray, seeds: np.ndarray) -> list[Evaluation]:
        for _ in genomes:
            if self.mode == "sleep":
                time.sleep(self.work)
            elif self.mode == "spin":
                spin(self.work)
        return super().evaluate(genomes, seeds)


def spin(seconds: float) -> None:
    """Busy arithmetic on one core (holds the GIL) for about `seconds`."""
    end, x = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        for i in range(1000):
            x += i * i


def search(task: Busy, executor, evaluations: int = EVALUATIONS) -> tuple[float, dict]:
    """Wall seconds of the whole run loop, and its summary."""
    with tempfile.TemporaryDirectory() as folder:
        rng = np.random.default_rng(0)
        algorithm = RandomSearch(task.space, rng, POPULATION)
        stop = StopRules(max_evaluations=evaluations)
        loop = SearchLoop(task, algorithm, rng, Path(folder), 0, stop, executor)
        began = time.perf_counter()
        summary = loop.run()
        return time.perf_counter() - began, summary


def timed(task: Busy, executor, repeats: int) -> tuple[float, dict]:
    runs = [search(task, executor) for _ in range(repeats)]
    return statistics.median(r[0] for r in runs), runs[0][1]


def scaling_rows(work: float, repeats: int, executors: dict, slots: int) -> list[str]:
    rows = [
        "| work per evaluation | executor | wall s | ms per evaluation | overhead per "
        "evaluation | speed-up vs local |",
        "|---|---|---|---|---|---|",
    ]
    for mode in ("none", "sleep", "spin"):
        seconds = 0.0 if mode == "none" else work
        task, base, reference = Busy(mode, seconds), None, None
        for name, (executor, parallel) in executors.items():
            wall, summary = timed(task, executor, repeats)
            summary.pop("wall_seconds")
            assert reference in (None, summary), "executors disagree"  # same search
            reference, base = summary, base or wall
            ideal = seconds / (slots if parallel else 1)
            overhead = (wall / EVALUATIONS - ideal) * 1e3
            rows.append(
                f"| {mode} {seconds * 1e3:.0f} ms | {name} | {wall:.2f} | "
                f"{wall / EVALUATIONS * 1e3:.1f} | {overhead:.1f} ms | {base / wall:.2f}x |"
            )
    return rows


def startup_rows(ray, executor_class) -> tuple[list[str], dict]:
    began = time.perf_counter()
    ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING)
    init = time.perf_counter() - began
    executor = executor_class(chunk_size=1)
    cold, _ = search(Busy("none", 0.0), executor, evaluations=POPULATION)
    warm, _ = search(Busy("none", 0.0), executor, evaluations=POPULATION)
    payload, _ = search(Busy("none", 0.0, payload_mb=256), executor, evaluations=POPULATION)
    naive = per_task_payload(ray, Busy("none", 0.0, payload_mb=256).payload, POPULATION)
    rows = [
        f"- `ray.init` (start a local instance): {init:.2f} s",
        f"- first run, {POPULATION} evaluations, workers starting: {cold:.2f} s; "
        f"the same run again, workers warm: {warm:.2f} s",
        f"- the same run with a 256 MB array in the task (put once, fetched once per worker): "
        f"{payload:.2f} s; for contrast, {POPULATION} plain Ray tasks each given the array as "
        f"an argument (shipped per task): {naive:.2f} s",
    ]
    return rows, executor


def per_task_payload(ray, payload: np.ndarray, tasks: int) -> float:
    """Seconds for `tasks` Ray tasks that each receive `payload` as an argument."""
    touch = ray.remote(num_cpus=1)(lambda data, i: float(data[i]))
    began = time.perf_counter()
    ray.get([touch.remote(payload, i) for i in range(tasks)])
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=float, default=0.1, help="seconds per evaluation")
    parser.add_argument("--repeats", type=int, default=3, help="runs per row (median)")
    parser.add_argument("--write", type=Path, help="append the results to this markdown file")
    args = parser.parse_args()

    import ray

    from evotune.executors.ray import RayExecutor

    startup, ray_one = startup_rows(ray, RayExecutor)
    slots = int(ray.cluster_resources()["CPU"])
    executors = {
        "local": (LocalExecutor(chunk_size=1), False),
        "local, batch null (all at once)": (LocalExecutor(), False),
        "ray, batch 1": (ray_one, True),
        "ray, batch null (even split)": (RayExecutor(), True),
    }
    rows = scaling_rows(args.work, args.repeats, executors, slots)
    header = f"{os.cpu_count()} CPUs, Ray {ray.__version__}, {slots} evaluation slots"
    text = "\n".join([header, "", *rows, "", *startup])
    print(text)
    if args.write:
        with open(args.write, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
