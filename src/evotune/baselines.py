"""Baselines reported beside the search, and test metrics of the winners.

A task that defines `baseline_genomes(budget, rng)` (name -> candidate genomes) and
`test_metrics(genome, seed)` gets, after the search: every candidate evaluated exactly
as the search evaluates (same seeds from genome hashes, so a genome the search already
saw is not trained again), the best candidate of each baseline retrained and measured
on the test split, and the same for the search's best. Evaluations are journaled in
`baselines.jsonl`, so a resumed run does not repeat them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from evotune.engine.journal import Journal, read_jsonl
from evotune.engine.loop import Callbacks, SearchLoop
from evotune.engine.problem import evaluation_seed, losses_of
from evotune.engine.state import atomic_write_json


def has_baselines(task: Any) -> bool:
    return hasattr(task, "baseline_genomes") and hasattr(task, "test_metrics")


class BaselineRunner:
    def __init__(self, loop: SearchLoop, callbacks: Callbacks | None = None) -> None:
        self.loop, self.task = loop, loop.problem
        self.callbacks = callbacks or Callbacks()
        self.path = Path(loop.run_dir) / "baselines.jsonl"
        self.done = {(e["kind"], e["hash"]): e for e in read_jsonl(self.path)}
        self.journal = Journal(self.path)

    def run(self, summary: dict[str, Any]) -> dict[str, Any]:
        """Add baselines and test metrics to `summary` (and summary.json)."""
        rng = np.random.default_rng([self.loop.seed, 7919])  # independent of the search's
        candidates = self.task.baseline_genomes(summary["evaluations"], rng)
        try:
            baselines = {name: self._best_of(name, g) for name, g in candidates.items()}
            if summary["best"] is not None:
                genome = self.task.space.from_json(summary["best"]["genome"])
                summary["best"]["metrics"] |= self._test(genome)
        finally:
            self.journal.close()
        summary["baselines"] = baselines
        atomic_write_json(Path(self.loop.run_dir) / "summary.json", summary)
        return summary

    def _best_of(self, name: str, genomes: np.ndarray) -> dict[str, Any]:
        self.callbacks.generation_started(-1, len(genomes))
        entries = [self._evaluate(g) for g in genomes]
        losses = losses_of(self.task.objectives, np.array([e["fitness"] for e in entries]))
        best = entries[int(np.lexsort(losses.T[::-1])[0])]
        genome = self.task.space.from_json(best["genome"])
        return {
            "hash": best["hash"],
            "genome": best["genome"],
            "fitness": best["fitness"],
            "metrics": {**best["metrics"], **self._test(genome), "candidates": len(genomes)},
        }

    def _evaluate(self, genome: np.ndarray) -> dict[str, Any]:
        key = self.task.space.hash(genome)
        known = self.loop.archive.get(key) or self.done.get(("eval", key))
        if known is None:
            seed = evaluation_seed(self.loop.seed, key)
            result = self.task.evaluate(genome[None, :], np.array([seed]))[0]
            known = self._record("eval", key, genome, list(result.fitness), result.metrics)
        self.callbacks.evaluated(1)
        return known

    def _test(self, genome: np.ndarray) -> dict[str, float]:
        key = self.task.space.hash(genome)
        known = self.done.get(("test", key))
        if known is None:
            metrics = self.task.test_metrics(genome, evaluation_seed(self.loop.seed, key))
            known = self._record("test", key, genome, [], metrics)
        return {k: v for k, v in known["metrics"].items() if k.startswith("test_")}

    def _record(self, kind, key, genome, fitness, metrics) -> dict[str, Any]:
        entry = {
            "kind": kind,
            "hash": key,
            "genome": self.task.space.to_json(genome),
            "fitness": [float(v) for v in fitness],
            "metrics": json.loads(json.dumps(metrics)),
        }
        self.journal.append([entry])
        self.done[(kind, key)] = entry
        return entry
