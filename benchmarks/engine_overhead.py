"""Engine speed and quality against pymoo, and the run loop's cost per evaluation.

Measures, in one process so ratios are comparable on a noisy machine:
1. NSGA-II on ZDT1/ZDT2 (30 variables, population 100, 200 generations): evotune's
   algorithm alone vs pymoo's NSGA2, wall time and final hypervolume (ref 1.1, 1.1).
2. The same search through evotune's full run loop (journal fsynced per batch, cache,
   checkpoint every generation, statistics): the loop's overhead per evaluation.

    python benchmarks/engine_overhead.py [--seeds 3] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import moocore
import numpy as np

from evotune.engine.loop import SearchLoop, StopRules
from evotune.engine.nsga2 import NSGA2
from evotune.engine.operators import CROSSOVER, MUTATION, SELECTION
from evotune.executors import LocalExecutor
from evotune.tasks.toy import ZDT1, ZDT2

POP, GENS, REF = 100, 200, [1.1, 1.1]


def evotune_algorithm(task, seed: int) -> NSGA2:
    rng = np.random.default_rng(seed)
    return NSGA2(
        task.space,
        rng,
        POP,
        SELECTION.build("tournament", "selection"),
        CROSSOVER.build({"name": "sbx", "eta": 15, "prob": 0.9}, "crossover"),
        MUTATION.build({"name": "polynomial", "eta": 20}, "mutation"),
    )


def objectives(task, x: np.ndarray) -> np.ndarray:
    return np.array([e.fitness for e in task.evaluate(x, np.zeros(len(x), dtype=np.int64))])


def run_bare(task, seed: int) -> tuple[float, float]:
    began = time.perf_counter()
    algo = evotune_algorithm(task, seed)
    for _ in range(GENS):
        x = algo.ask()
        algo.tell(x, objectives(task, x))
    return time.perf_counter() - began, moocore.hypervolume(algo.losses, ref=REF)


def run_loop(task, seed: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as folder:
        algo = evotune_algorithm(task, seed)
        loop = SearchLoop(
            task, algo, algo.rng, Path(folder), seed, StopRules(generations=GENS), LocalExecutor()
        )
        began = time.perf_counter()
        loop.run()
        return time.perf_counter() - began, moocore.hypervolume(algo.losses, ref=REF)


def run_pymoo(name: str, seed: int) -> tuple[float, float]:
    from pymoo.algorithms.moo.nsga2 import NSGA2 as PymooNSGA2
    from pymoo.optimize import minimize
    from pymoo.problems import get_problem

    began = time.perf_counter()
    result = minimize(get_problem(name), PymooNSGA2(pop_size=POP), ("n_gen", GENS), seed=seed)
    return time.perf_counter() - began, moocore.hypervolume(result.F, ref=REF)


def measure(seeds: int) -> list[str]:
    rows = [
        "| problem | pymoo s | evotune algorithm s | evotune full loop s | loop overhead "
        "per evaluation | HV pymoo | HV evotune | HV ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task in (ZDT1(30), ZDT2(30)):
        runs = {"pymoo": [], "bare": [], "loop": []}
        for seed in range(seeds):
            runs["pymoo"].append(run_pymoo(task.name, seed))
            runs["bare"].append(run_bare(task, seed))
            runs["loop"].append(run_loop(task, seed))
        t = {k: statistics.median(r[0] for r in v) for k, v in runs.items()}
        hv = {k: statistics.mean(r[1] for r in v) for k, v in runs.items()}
        overhead_ms = (t["loop"] - t["bare"]) / (POP * GENS) * 1e3
        rows.append(
            f"| {task.name} | {t['pymoo']:.2f} | {t['bare']:.2f} | {t['loop']:.2f} | "
            f"{overhead_ms:.3f} ms | {hv['pymoo']:.4f} | {hv['loop']:.4f} | "
            f"{hv['loop'] / hv['pymoo']:.4f} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--write", type=Path, help="append the table to this markdown file")
    args = parser.parse_args()
    rows = measure(args.seeds)
    print("\n".join(rows))
    if args.write:
        with open(args.write, "a", encoding="utf-8") as handle:
            handle.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
