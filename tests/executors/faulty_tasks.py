"""Test-only tasks that fail on purpose: OneMax whose evaluation raises for some genomes,
raises for all while a flag file exists, or kills its own (Ray worker) process; and
helpers to compare run directories.

Registered by the tests that use them, never in `evotune.tasks`. Ray workers import this
module by name, so the Ray fixture puts this folder on their PYTHONPATH.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np

from evotune.engine.problem import Evaluation
from evotune.tasks.toy import OneMax, ToyFitness


class FaultyFitness(ToyFitness):
    fail_prefix: str | None = None  # genomes that start with these bits raise ValueError
    broken_flag: str | None = None  # every evaluation raises while this file exists
    crash_once_dir: str | None = None  # kill the worker the first time a genome is seen
    crashes: int = 2  # ... for this many genomes at most
    load_log: str | None = None  # folder: each unpickling of the task writes a file there


class FaultyOneMax(OneMax):
    name = "faulty_onemax"
    description = "OneMax that fails on purpose (tests only)"
    Fitness = FaultyFitness

    @classmethod
    def from_config(cls, config: Any) -> FaultyOneMax:
        task = cls(config.task.length, config.task.frozen_prefix)
        task.delay = config.fitness.delay
        task.options = config.fitness
        return task

    def evaluate(self, genomes: np.ndarray, seeds: np.ndarray) -> list[Evaluation]:
        for genome in genomes:
            self.trouble(genome)
        return super().evaluate(genomes, seeds)

    def trouble(self, genome: np.ndarray) -> None:
        bits = "".join(str(int(b)) for b in genome)
        options = self.options
        if options.broken_flag and Path(options.broken_flag).exists():
            raise RuntimeError(f"broken while {options.broken_flag} exists")
        if options.fail_prefix and bits.startswith(options.fail_prefix):
            raise ValueError(f"unlucky genome {bits[:8]}...")
        if options.crash_once_dir:
            self.crash_once(Path(options.crash_once_dir), self.space.hash(genome))

    def crash_once(self, folder: Path, key: str) -> None:
        """SIGKILL this process the first time it sees `key` (for `crashes` genomes)."""
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder.parent / f"{folder.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two workers must not both take the last crash
            marker = folder / key
            if marker.exists() or len(list(folder.iterdir())) >= self.options.crashes:
                return
            marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickled (in a Ray worker): leave a trace, so tests can count the loads."""
        self.__dict__.update(state)
        folder = self.options.load_log
        if folder:
            Path(folder, f"{os.getpid()}-{len(os.listdir(folder))}").write_text("")


class BaselinedOneMax(FaultyOneMax):
    """FaultyOneMax with baselines (all ones, and random masks with the search's budget);
    each evaluation records the process it ran in."""

    name = "baselined_onemax"

    def evaluate(self, genomes: np.ndarray, seeds: np.ndarray) -> list[Evaluation]:
        results = super().evaluate(genomes, seeds)
        return [Evaluation(r.fitness, {**r.metrics, "pid": os.getpid()}) for r in results]

    def baseline_genomes(self, budget: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        ones = np.ones((1, self.space.n_genes), dtype=np.uint8)
        return {"full": ones, "random": self.space.sample(budget, rng)}

    def test_metrics(self, genome: np.ndarray, seed: int) -> dict[str, float]:
        return {"test_accuracy": float(genome.mean())}


def register(monkeypatch: Any) -> None:
    """Make `task: faulty_onemax` (and `baselined_onemax`) resolve in this process, for
    one test."""
    import evotune.config

    real = evotune.config.get_task
    ours = {task.name: task for task in (FaultyOneMax, BaselinedOneMax)}

    def get_task(name: str, where: str = "task") -> type:
        return ours[name] if name in ours else real(name, where)

    monkeypatch.setattr(evotune.config, "get_task", get_task)


def write(folder: Path, text: str, name: str = "config.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def journal_lines(run_dir: Path) -> list[dict[str, Any]]:
    """The journal's lines without wall times, in file order (NaN fitness as a string:
    NaN != NaN would make equal journals compare unequal)."""
    lines = (run_dir / "journal.jsonl").read_text().splitlines()
    return [_without_seconds(json.loads(line)) for line in lines]


def comparable(run_dir: Path) -> dict[str, Any]:
    """What must not depend on the executor: the journal as a set (line order may differ),
    the generation records and the summary, wall times aside."""
    summary = json.loads((run_dir / "summary.json").read_text())
    summary.pop("wall_seconds")
    generations = (run_dir / "generations.jsonl").read_text().splitlines()
    return {
        "journal": sorted(json.dumps(e, sort_keys=True) for e in journal_lines(run_dir)),
        "generations": [_without_seconds(json.loads(line)) for line in generations],
        "summary": summary,
    }


def _without_seconds(row: dict[str, Any]) -> dict[str, Any]:
    row = {k: v for k, v in row.items() if k != "seconds"}
    if "fitness" in row:
        row["fitness"] = [repr(v) for v in row["fitness"]]
    return row
