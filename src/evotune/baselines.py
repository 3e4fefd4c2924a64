"""Baselines reported beside the search, and test metrics of the winners.

A task that defines `baseline_genomes(budget, rng)` (name -> candidate genomes) and
`test_metrics(genome, seed)` gets, after the search: every candidate evaluated exactly
as the search evaluates (same seeds from genome hashes, so a genome the search already
saw is not trained again), the best candidate of each baseline retrained and measured
on the test split, and the same for the search's best. Evaluations are journaled in
`baselines.jsonl`, so a resumed run does not repeat them.

Candidates go through the run's executor (Ray spreads them like a generation) and its
failure guard: a candidate whose evaluation raises is journaled with its error and
skipped; a baseline whose every candidate failed is left out of `baselines` and named,
with the error, under `baseline_failures`. A resumed run retries failed candidates.
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
        self.done = {(e["kind"], e["hash"]): e for e in read_jsonl(self.path) if not e.get("error")}
        self.journal = Journal(self.path)

    def run(self, summary: dict[str, Any]) -> dict[str, Any]:
        """Add baselines and test metrics to `summary` (and summary.json)."""
        rng = np.random.default_rng([self.loop.seed, 7919])  # independent of the search's
        candidates = self.task.baseline_genomes(summary["evaluations"], rng)
        baselines, failures = {}, {}
        try:
            for name, genomes in candidates.items():
                best = self._best_of(name, genomes)
                if "error" in best:
                    failures[name] = best["error"]
                else:
                    baselines[name] = best
            if summary["best"] is not None:
                genome = self.task.space.from_json(summary["best"]["genome"])
                summary["best"]["metrics"] |= self._test(genome)
        finally:
            self.journal.close()
        summary["baselines"] = baselines
        if failures:
            summary["baseline_failures"] = failures
        atomic_write_json(Path(self.loop.run_dir) / "summary.json", summary)
        return summary

    def _best_of(self, name: str, genomes: np.ndarray) -> dict[str, Any]:
        self.callbacks.generation_started(-1, len(genomes))
        entries = self._evaluate(genomes)
        usable = [e for e in entries if not e.get("error")]
        if not usable:
            return {"error": entries[0]["error"]}
        entries = usable
        losses = losses_of(self.task.objectives, np.array([e["fitness"] for e in entries]))
        best = entries[int(np.lexsort(losses.T[::-1])[0])]
        genome = self.task.space.from_json(best["genome"])
        return {
            "hash": best["hash"],
            "genome": best["genome"],
            "fitness": best["fitness"],
            "metrics": {**best["metrics"], **self._test(genome), "candidates": len(genomes)},
        }

    def _evaluate(self, genomes: np.ndarray) -> list[dict[str, Any]]:
        """A journal entry per genome: known ones looked up (the search's archive, this
        file), the others evaluated through the executor, each once."""
        keys = [self.task.space.hash(g) for g in genomes]
        known = {k: self.loop.archive.get(k) or self.done.get(("eval", k)) for k in keys}
        first = {k: i for i, k in reversed(list(enumerate(keys)))}  # duplicates once
        todo = [i for i, k in enumerate(keys) if known[k] is None and first[k] == i]
        self.callbacks.evaluated(len(keys) - len(todo))
        if todo:
            seeds = np.array([evaluation_seed(self.loop.seed, keys[i]) for i in todo])
            results = self.loop.executor.map(self.task, genomes[todo], seeds)
            try:
                for chunk, evaluations, _ in results:
                    for j, result in zip(chunk, evaluations):
                        i = todo[j]
                        known[keys[i]] = self._record(
                            "eval", keys[i], genomes[i], result.fitness, result.metrics,
                            error=result.error,
                        )  # fmt: skip
                    self.callbacks.evaluated(len(chunk))
            finally:  # interrupted: cancel what is in flight (Ray)
                getattr(results, "close", lambda: None)()
        return [known[k] for k in keys]

    def _test(self, genome: np.ndarray) -> dict[str, float]:
        key = self.task.space.hash(genome)
        known = self.done.get(("test", key))
        if known is None:
            metrics = self.task.test_metrics(genome, evaluation_seed(self.loop.seed, key))
            known = self._record("test", key, genome, [], metrics)
        return {k: v for k, v in known["metrics"].items() if k.startswith("test_")}

    def _record(self, kind, key, genome, fitness, metrics, error=None) -> dict[str, Any]:
        entry = {
            "kind": kind,
            "hash": key,
            "genome": self.task.space.to_json(genome),
            "fitness": [float(v) for v in fitness],
            "metrics": json.loads(json.dumps(metrics)),
        }
        if error:
            entry["error"] = error  # journaled, not remembered: a resumed run retries
        else:
            self.done[(kind, key)] = entry
        self.journal.append([entry])
        return entry
