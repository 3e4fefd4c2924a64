"""baselines.py: candidates through the executor and its failure guard, once each,
journaled, and retried on resume when they failed."""

from __future__ import annotations

import json

import numpy as np

from evotune.baselines import BaselineRunner
from evotune.cli import baseline_table
from evotune.engine.annealing import RandomSearch
from evotune.engine.loop import SearchLoop, StopRules
from evotune.engine.problem import Evaluation, Objective
from evotune.engine.spaces import BinarySpace
from evotune.executors import LocalExecutor


class OnesWithBaselines:
    """Counts ones; genomes whose first bit is set raise while `broken`."""

    def __init__(self) -> None:
        self.space = BinarySpace(6)
        self.objectives = (Objective("ones", "max"),)
        self.genomes_per_call = None
        self.broken = True
        self.evaluated: list[str] = []

    def evaluate(self, genomes, seeds):
        if self.broken and genomes[:, 0].any():
            raise RuntimeError("out of memory")
        self.evaluated += [self.space.hash(g) for g in genomes]
        return [Evaluation((float(g.sum()),), {}) for g in genomes]

    def reference_point(self):
        return None

    def baseline_genomes(self, budget, rng):
        half = np.array([[0, 0, 0, 1, 1, 1], [0, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1]])
        return {"full": np.ones((1, 6), dtype=np.uint8), "half": half.astype(np.uint8)}

    def test_metrics(self, genome, seed):
        return {"test_accuracy": float(genome.sum()) / 6}


def run(folder, problem, resume=False):
    loop = SearchLoop(
        problem,
        RandomSearch(problem.space, np.random.default_rng(0), 2),
        np.random.default_rng(0),
        folder,
        0,
        StopRules(generations=1),
        LocalExecutor(chunk_size=1),
    )
    if resume:
        loop.resume()
    return BaselineRunner(loop).run(loop.run())


def test_failed_candidates_are_skipped_and_a_baseline_that_all_failed_is_named(tmp_path):
    problem = OnesWithBaselines()
    summary = run(tmp_path, problem)
    assert summary["baselines"]["half"]["genome"] == "011111"
    assert summary["baselines"]["half"]["metrics"]["test_accuracy"] == 5 / 6
    assert "full" not in summary["baselines"]
    assert summary["baseline_failures"]["full"].startswith("RuntimeError: out of memory")
    assert "full     every candidate failed: RuntimeError" in baseline_table(summary)
    entries = [json.loads(line) for line in (tmp_path / "baselines.jsonl").open()]
    assert [e["error"][:12] for e in entries if "error" in e] == ["RuntimeError"]
    # the duplicate candidate of "half" was evaluated once
    assert problem.evaluated.count(problem.space.hash(np.array([0, 0, 0, 1, 1, 1]))) == 1


def test_a_resumed_run_retries_failed_candidates_only(tmp_path):
    run(tmp_path, OnesWithBaselines())
    fixed = OnesWithBaselines()
    fixed.broken = False
    summary = run(tmp_path, fixed, resume=True)
    assert summary["baselines"]["full"]["metrics"]["test_accuracy"] == 1.0
    assert "baseline_failures" not in summary
    assert fixed.evaluated == [fixed.space.hash(np.ones(6, dtype=np.uint8))]
