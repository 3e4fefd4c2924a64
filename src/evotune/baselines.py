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

A baseline whose candidates mean something else than the search's genomes (`layers`'
`auto_rgn`: the all-ones mask trained with per-tensor learning rates) gets its own
evaluator from the task's `baseline_problem(name)` (a view of the task); its entries are
journaled under their own kind (`eval:NAME`, `test:NAME`) and never taken from the
search's archive. Each baseline records its compute: `epochs_trained` and `seconds`
summed over its candidates' evaluations (the test retraining not included).

Equal compute (`baseline_budget: time` on the task): an open-ended baseline (named in
the task's `open_baselines`, drawn by its `more_baseline_genomes(name, count, rng)`:
`layers`' random masks) starts with a generation's worth of candidates and draws
another generation's worth while its evaluations have taken less time than the
search's; with `evaluations` it gets as many candidates as the search evaluated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from evotune.engine.journal import Journal, read_jsonl
from evotune.engine.loop import Callbacks, SearchLoop
from evotune.engine.problem import Problem, evaluation_seed
from evotune.engine.state import atomic_write_json
from evotune.engine.summary import best_entry


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
        timed = getattr(self.task, "baseline_budget", "evaluations") == "time"
        chunk = -(-summary["evaluations"] // max(1, summary.get("generations") or 1))
        first = chunk if timed else summary["evaluations"]
        candidates = self.task.baseline_genomes(first, rng)
        baselines, failures = {}, {}
        try:
            for name, genomes in candidates.items():
                more = self._more(name, chunk, rng) if timed else None
                best = self._best_of(name, genomes, more)
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

    def _more(self, name: str, chunk: int, rng: np.random.Generator) -> Any:
        """A source of further candidates for an open-ended baseline, else None."""
        if name not in getattr(self.task, "open_baselines", ()):
            return None
        return lambda: self.task.more_baseline_genomes(name, max(1, chunk), rng)

    def _best_of(self, name: str, genomes: np.ndarray, more: Any = None) -> dict[str, Any]:
        self.callbacks.generation_started(-1, len(genomes))
        special = getattr(self.task, "baseline_problem", lambda _: None)(name)
        problem, suffix = (self.task, "") if special is None else (special, f":{name}")
        entries = self._evaluate(genomes, problem, suffix)
        if more is not None:
            entries, genomes = self._until_search_time(entries, genomes, more, problem, suffix)
        usable = [e for e in entries if not e.get("error")]
        if not usable:
            return {"error": entries[0]["error"]}
        best = best_entry(self.task.objectives, usable)  # full fidelity wins a tie
        genome = self.task.space.from_json(best["genome"])
        unique = {e["hash"]: e for e in entries}.values()  # a duplicate trained once
        return {
            "hash": best["hash"],
            "genome": best["genome"],
            "fitness": best["fitness"],
            "metrics": {
                **best["metrics"],
                **self._test(genome, problem, suffix),
                "candidates": len(genomes),
            },
            "epochs_trained": sum(_epochs_trained(e) for e in unique),
            "seconds": round(sum(float(e.get("seconds") or 0.0) for e in unique), 3),
        }

    def _until_search_time(self, entries, genomes, more, problem, suffix) -> tuple[list, Any]:
        """Draw and evaluate more candidates while these took less time than the
        search's evaluations (stops when a draw brings no new genome)."""
        search = sum(float(e.get("seconds") or 0.0) for e in self.loop.archive.values())
        seen = {e["hash"]: e for e in entries}
        while sum(float(e.get("seconds") or 0.0) for e in seen.values()) < search:
            extra = more()
            self.callbacks.generation_started(-1, len(extra))
            new = self._evaluate(extra, problem, suffix)
            if all(e["hash"] in seen for e in new):
                break
            seen.update((e["hash"], e) for e in new)
            entries, genomes = entries + new, np.concatenate([genomes, extra])
        return entries, genomes

    def _evaluate(
        self, genomes: np.ndarray, problem: Problem, suffix: str = ""
    ) -> list[dict[str, Any]]:
        """A journal entry per genome: known ones looked up (the search's archive, this
        file), the others evaluated through the executor, each once."""
        keys = [self.task.space.hash(g) for g in genomes]
        archive = self.loop.archive if not suffix else {}
        kind = "eval" + suffix
        known = {k: archive.get(k) or self.done.get((kind, k)) for k in keys}
        first = {k: i for i, k in reversed(list(enumerate(keys)))}  # duplicates once
        todo = [i for i, k in enumerate(keys) if known[k] is None and first[k] == i]
        self.callbacks.evaluated(len(keys) - len(todo))
        if todo:
            seeds = np.array([evaluation_seed(self.loop.seed, keys[i]) for i in todo])
            results = self.loop.executor.map(problem, genomes[todo], seeds)
            try:
                for chunk, evaluations, seconds in results:
                    for j, result in zip(chunk, evaluations):
                        i = todo[j]
                        known[keys[i]] = self._record(
                            kind, keys[i], genomes[i], result.fitness, result.metrics,
                            error=result.error, seconds=seconds,
                        )  # fmt: skip
                    self.callbacks.evaluated(len(chunk))
            finally:  # interrupted: cancel what is in flight (Ray)
                getattr(results, "close", lambda: None)()
        return [known[k] for k in keys]

    def _test(self, genome: np.ndarray, problem: Any = None, suffix: str = "") -> dict[str, float]:
        key, kind = self.task.space.hash(genome), "test" + suffix
        known = self.done.get((kind, key))
        if known is None:
            problem = problem or self.task
            metrics = problem.test_metrics(genome, evaluation_seed(self.loop.seed, key))
            known = self._record(kind, key, genome, [], metrics)
        return {k: v for k, v in known["metrics"].items() if k.startswith("test_")}

    def _record(
        self, kind, key, genome, fitness, metrics, error=None, seconds=None
    ) -> dict[str, Any]:
        entry = {
            "kind": kind,
            "hash": key,
            "genome": self.task.space.to_json(genome),
            "fitness": [float(v) for v in fitness],
            "metrics": json.loads(json.dumps(metrics)),
        }
        if seconds is not None:
            entry["seconds"] = round(float(seconds), 3)
        if error:
            entry["error"] = error  # journaled, not remembered: a resumed run retries
        else:
            self.done[(kind, key)] = entry
        self.journal.append([entry])
        return entry


def _epochs_trained(entry: dict[str, Any]) -> int:
    """Epochs an evaluation trained (all repeats), from its metrics (0 when unknown)."""
    metrics = entry.get("metrics") or {}
    return int(metrics.get("epochs_trained", metrics.get("epochs", 0)) or 0)
