"""The run loop: ask -> evaluate (through an executor, with a fitness cache) -> tell.

It owns the run directory's engine files: `journal.jsonl` (one line per finished
evaluation), `generations.jsonl` (one line per generation), `state/checkpoint.npz`
(written atomically after every generation) and `summary.json`. Genomes of an
`external` space (too large for a JSON line) go to `genomes/<hash>.npy` and the
journal holds a reference (see `genome_store.py`).

Resuming restores the checkpoint (algorithm state and the run's random generator),
then replays the generation that was cut short: its evaluations already in the journal
are taken from there (`replay.py`), so a killed run finishes exactly as an
uninterrupted one. What is reported (best, Pareto front, hypervolume, one record per
generation) is computed in `summary.py`.

`repeat: elites` (a problem with `confirmations` > 0): after each generation's `tell`,
every genome in the algorithm's kept set (the GA's elites) not confirmed yet is
evaluated `confirmations` more times, from seeds derived from its own and at the full
budget; the journal gets those lines (`"confirms": true`, indices after the
generation's), the cache their mean (`replay.fold`), and the algorithm the new losses.
Each confirmation counts as an evaluation.

A failed evaluation (the task raised: see `executors/guard.py`) is journaled with its
`error` and NaN fitness, and the run goes on. It is not cached: a failed genome asked
again, in a later generation or after a resume, is evaluated again, so a transient
failure (out of memory, a lost node) or a fixed bug gets a second chance. After
`max_failures` failures in a row the run stops with a `RunError`, resumable.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from evotune.engine.algorithm import Algorithm
from evotune.engine.genome_store import GenomeStore
from evotune.engine.journal import Journal
from evotune.engine.problem import (
    Evaluation,
    Problem,
    at_full_budget,
    confirmations_of,
    evaluation_seed,
    is_whole_generation,
    losses_of,
    repeat_seeds,
)
from evotune.engine.replay import Entry, FitnessCache
from evotune.engine.state import atomic_write_json, load_checkpoint, save_checkpoint
from evotune.engine.summary import (
    Hypervolume,
    best_entry,
    pareto_entries,
    population_record,
    public,
)
from evotune.errors import RunError, UserError

CHECKPOINT = Path("state") / "checkpoint.npz"
FORMAT_VERSION = 1


class Executor(Protocol):
    """Evaluates genomes; yields (indices into `genomes`, evaluations, seconds) per
    finished chunk, in any order."""

    def map(
        self, problem: Problem, genomes: np.ndarray, seeds: np.ndarray
    ) -> Iterator[tuple[np.ndarray, list[Evaluation], float]]: ...


class Callbacks:
    """Hooks for progress display; the default does nothing."""

    def generation_started(self, generation: int, size: int) -> None: ...

    def evaluated(self, count: int) -> None: ...

    def generation_finished(self, record: dict[str, Any]) -> None: ...

    def phase_started(
        self,
        label: str,
        index: int,
        count: int,
        first_generation: int = 0,
        first_evaluation: int = 0,
        unit: str = "gen",
    ) -> None:
        """Search `index` of `count` of a run made of several begins ('algorithm ga' of
        a comparison, 'stage layer1' of a staged run), its counts starting there."""


@dataclass(frozen=True)
class StopRules:
    generations: int | None = None  # generations in all, the initial one included
    max_evaluations: int | None = None  # evaluations in all (cached ones are free)
    max_seconds: float | None = None  # wall time in all, across resumes
    target: float | None = None  # first objective reaches this value

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class SearchLoop:
    """One search run in one directory."""

    def __init__(
        self,
        problem: Problem,
        algorithm: Algorithm,
        rng: np.random.Generator,
        run_dir: Path,
        seed: int,
        stop: StopRules,
        executor: Executor,
        callbacks: Callbacks | None = None,
        extra_meta: dict[str, Any] | None = None,
        max_failures: int | None = None,
    ) -> None:
        self.problem, self.algorithm, self.rng = problem, algorithm, rng
        self.run_dir, self.seed, self.stop = Path(run_dir), seed, stop
        self.executor = executor
        self.callbacks = callbacks or Callbacks()
        self.extra_meta = extra_meta or {}
        self.objectives = problem.objectives
        self.cache = FitnessCache()
        self.max_failures = max_failures  # failed evaluations in a row before stopping
        self.failures_in_a_row = 0
        self.generation = 0
        self.evaluations = 0
        self.elapsed_before = 0.0
        self.hypervolume = Hypervolume(problem)
        self.journal = Journal(self.run_dir / "journal.jsonl")
        self.store = GenomeStore(self.run_dir) if problem.space.external else None
        self.generations_log = Journal(self.run_dir / "generations.jsonl")
        self._started = time.monotonic()
        self._full_budget: Problem | None = None  # the view confirmations are evaluated by
        if confirmations_of(problem) and not algorithm.keeps_elites:
            raise UserError(
                f"fitness.repeat: elites confirms the elites a GA keeps; algorithm "
                f"{algorithm.name!r} keeps none: use search.algorithm: ga or repeat: all"
            )

    @property
    def archive(self) -> dict[str, Entry]:
        """hash -> the genome's first successful evaluation (the fitness cache)."""
        return self.cache.known

    # ---- public API -------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Run generations until a stop rule holds; write and return the summary."""
        self._started = time.monotonic()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            while (reason := self.stop_reason()) is None:
                self._run_generation()
        finally:
            self.journal.close()
            self.generations_log.close()
        return self.write_summary(reason)

    def resume(self) -> dict[str, Any]:
        """Load the checkpoint and journal of an interrupted run; returns the checkpoint
        metadata (the caller may compare its own records, e.g. the config)."""
        path = self.run_dir / CHECKPOINT
        if not path.exists():  # killed in the first generation, or the checkpoint was
            self._reload_files(None)  # moved away: every generation replays the journal
            return {}
        meta, arrays = load_checkpoint(path)
        self._check_compatible(meta)
        self.algorithm.load_state_dict(
            {k[len("algorithm.") :]: v for k, v in arrays.items() if k.startswith("algorithm.")}
        )
        self.rng.bit_generator.state = meta["rng"]
        self.generation, self.evaluations = meta["generation"], meta["evaluations"]
        self.elapsed_before = meta["elapsed_seconds"]
        self.hypervolume = Hypervolume(self.problem, meta["reference"])
        self._reload_files(self.generation)
        return meta

    def stop_reason(self) -> str | None:
        """Why the run should stop now, or None to go on."""
        stop = self.stop
        if stop.generations is not None and self.generation >= stop.generations:
            return "generations"
        if stop.max_evaluations is not None and self.evaluations >= stop.max_evaluations:
            return "max_evaluations"
        if stop.max_seconds is not None and self.elapsed() >= stop.max_seconds:
            return "max_minutes"
        if stop.target is not None and self.archive and self._target_reached():
            return "target"
        return None

    def elapsed(self) -> float:
        return self.elapsed_before + (time.monotonic() - self._started)

    # ---- one generation: ask -> evaluate -> tell --------------------------------

    def _run_generation(self) -> None:
        started = time.monotonic()
        genomes = self.problem.space.check(self.algorithm.ask())
        hashes = [self.problem.space.hash(g) for g in genomes]
        genomes, hashes = self._trim_to_budget(genomes, hashes)
        self.callbacks.generation_started(self.generation, len(genomes))
        fitness, cached = self._evaluate(genomes, hashes)
        self.algorithm.tell(genomes, losses_of(self.objectives, fitness))
        self._confirm_kept(first_index=len(genomes))
        record = self._generation_record(cached, time.monotonic() - started)
        self._keep_genomes(genomes, hashes)
        self.generations_log.append([record])
        self.generation += 1
        self._checkpoint()
        self.callbacks.generation_finished(record)

    def _trim_to_budget(self, genomes: np.ndarray, hashes: list[str]):
        """Cut the generation so that new evaluations do not exceed max_evaluations."""
        if self.stop.max_evaluations is None:
            return genomes, hashes
        budget = self.stop.max_evaluations - self.evaluations
        new: set[str] = set()
        for i, key in enumerate(hashes):
            if key not in self.archive and key not in new:
                if len(new) == budget:
                    return genomes[:i], hashes[:i]
                new.add(key)
        return genomes, hashes

    def _evaluate(self, genomes: np.ndarray, hashes: list[str]) -> tuple[np.ndarray, int]:
        """Fitness of every genome (rows in order) and how many came from the cache."""
        self.cache.failed = {}
        entries = [self._replayed(i, h) for i, h in enumerate(hashes)]
        todo = self.cache.first_unseen(entries, hashes)
        if todo:
            seeds = np.array([evaluation_seed(self.seed, hashes[i]) for i in todo], dtype=np.int64)
            results = self.executor.map(self.problem, genomes[todo], seeds)
            try:
                for chunk, evaluations, seconds in results:
                    done = [
                        self._record(todo[j], hashes[todo[j]], genomes[todo[j]], r, seconds)
                        for j, r in zip(chunk, evaluations)
                    ]
                    for entry in done:
                        entries[entry["index"]] = entry
                    self.journal.append(done)  # durable before a failure stop can raise
                    self.callbacks.evaluated(len(done))
                    self._count_failures(done)
            finally:  # a stop or an interrupt mid-generation: cancel what is in flight
                getattr(results, "close", lambda: None)()
        cached = [
            self.cache.cached(self.generation, i, h)
            for i, h in enumerate(hashes)
            if entries[i] is None
        ]
        for entry in cached:
            entries[entry["index"]] = entry
        self.journal.append(cached)
        self.callbacks.evaluated(len(cached))
        n_cached = sum(1 for e in entries if e["cached"])
        return np.array([e["fitness"] for e in entries], dtype=float), n_cached

    def _confirm_kept(self, first_index: int) -> None:
        """`repeat: elites`: evaluate the kept genomes not confirmed yet from their
        further seeds (journal indices from `first_index` on) and hand the algorithm
        their mean losses; again while a revision lets an unconfirmed genome into the
        kept set (at most the population's worth of rounds)."""
        extra = confirmations_of(self.problem)
        while extra:
            kept = self.algorithm.kept()
            keys = [self.problem.space.hash(g) for g in kept]
            todo = [
                i
                for i, key in enumerate(keys)
                if keys.index(key) == i and key in self.archive and not self.cache.confirmed(key)
            ]
            if self.stop.max_evaluations is not None:  # whole genomes within the budget
                left = self.stop.max_evaluations - self.evaluations
                todo = todo[: max(0, left) // extra]
            rows = [
                (i, seed)
                for i in todo
                for seed in repeat_seeds(evaluation_seed(self.seed, keys[i]), extra + 1)[1:]
            ]
            indices = [first_index + j for j in range(len(rows))]
            first_index += len(rows)
            replayed = [self._replayed(index, keys[i]) for index, (i, _) in zip(indices, rows)]
            new = [j for j, entry in enumerate(replayed) if entry is None]
            if new:
                genomes = kept[[rows[j][0] for j in new]]
                seeds = np.array([rows[j][1] for j in new], dtype=np.int64)
                self._evaluate_confirmations(genomes, seeds, [indices[j] for j in new])
            confirmed = [i for i in todo if self.cache.confirmed(keys[i])]
            if not confirmed:  # none left, or every confirmation failed
                return
            fitness = np.array([self.archive[keys[i]]["fitness"] for i in confirmed])
            self.algorithm.revise(kept[confirmed], losses_of(self.objectives, fitness))

    def _evaluate_confirmations(
        self, genomes: np.ndarray, seeds: np.ndarray, indices: list[int]
    ) -> None:
        if self._full_budget is None:  # one view for the run: an executor ships it once
            self._full_budget = at_full_budget(self.problem)
        results = self.executor.map(self._full_budget, genomes, seeds)
        try:
            for chunk, evaluations, seconds in results:
                done = [
                    self._record(indices[c], self.problem.space.hash(genomes[c]), genomes[c],
                                 result, seconds, confirms=True)
                    for c, result in zip(chunk, evaluations)
                ]  # fmt: skip
                self.journal.append(done)
                self.callbacks.evaluated(len(done))
                self._count_failures(done)
        finally:  # a stop or an interrupt: cancel what is in flight
            getattr(results, "close", lambda: None)()

    def _replayed(self, index: int, key: str) -> Entry | None:
        entry = self.cache.replayed(self.generation, index, key, self.journal.path)
        if entry is None or entry["cached"]:
            return entry
        if "error" in entry:  # a failure replayed (a run rebuilt from its journal)
            self.cache.failed.setdefault(key, entry)
            self.evaluations += 1
        else:
            self._remember(entry)
        return entry

    def _record(
        self,
        index: int,
        key: str,
        genome: np.ndarray,
        result: Evaluation,
        seconds: float,
        confirms: bool = False,
    ) -> Entry:
        failed = result.error is not None
        fitness = [float("nan")] * len(self.objectives) if failed else self._fitness(result)
        entry = {
            "generation": self.generation,
            "index": index,
            "hash": key,
            "genome": self._genome_json(key, genome),
            "fitness": fitness,
            "metrics": dict(result.metrics),
            "seconds": round(seconds, 6),
            "cached": False,
        }
        if confirms:
            entry["confirms"] = True
        if failed:  # it cost an evaluation, but its fitness is unknown: not cached
            entry["error"] = result.error
            self.cache.failed.setdefault(key, entry)
            self.evaluations += 1
            return entry
        self._remember(entry)
        return entry

    def _remember(self, entry: Entry) -> None:
        self.cache.remember(entry)
        self.evaluations += 1

    def _genome_json(self, key: str, genome: np.ndarray) -> Any:
        """The genome's values, or a reference to its file (see `_keep_genomes`)."""
        if self.store is None:
            return self.problem.space.to_json(genome)
        return self.store.reference(key, genome.size)

    def _keep_genomes(self, genomes: np.ndarray, hashes: list[str]) -> None:
        """Files for the best genome and the Pareto front, written before the checkpoint;
        the others are deleted. A genome can only join them in the generation that
        evaluates it, so this generation's genomes are all that may need a new file."""
        if self.store is None:
            return
        entries = list(self.archive.values())
        keep = {best_entry(self.objectives, entries)["hash"]} if entries else set()
        keep |= {e["hash"] for e in pareto_entries(self.objectives, entries)}
        for genome, key in zip(genomes, hashes):
            if key in keep:
                self.store.put(key, genome)
        self.store.retain(keep)

    def _fitness(self, result: Evaluation) -> list[float]:
        fitness = [float(v) for v in result.fitness]
        if len(fitness) != len(self.objectives):
            raise RuntimeError(
                f"the task returned {len(fitness)} fitness values, expected "
                f"{len(self.objectives)} ({', '.join(o.name for o in self.objectives)})"
            )
        return fitness

    def _count_failures(self, entries: list[Entry]) -> None:
        """Stop the run once `max_failures` evaluations in a row have failed."""
        for entry in entries:
            self.failures_in_a_row = self.failures_in_a_row + 1 if "error" in entry else 0
            if self.max_failures is not None and self.failures_in_a_row >= self.max_failures:
                count = self.failures_in_a_row
                raise RunError(
                    f"{count} evaluation{'s' * (count > 1)} failed in a row "
                    f"(executor.max_failures: {self.max_failures}); last: generation "
                    f"{entry['generation']} index {entry['index']}: {entry['error']}. "
                    f"Every failure is in {self.journal.path}; fix the cause, then "
                    f"`evotune resume {self.run_dir}` (failed evaluations are retried)"
                )

    # ---- records, checkpoint, summary -------------------------------------------

    def _generation_record(self, cached: int, seconds: float) -> Entry:
        genomes, losses = self.algorithm.population()
        return {
            "generation": self.generation,
            **population_record(self.problem, genomes, losses, self.hypervolume),
            "evaluations": self.evaluations,
            "cached": cached,
            "seconds": round(seconds, 6),
        }

    def _checkpoint(self) -> None:
        meta = {
            "format": FORMAT_VERSION,
            "generation": self.generation,
            "evaluations": self.evaluations,
            "elapsed_seconds": self.elapsed(),
            "rng": self.rng.bit_generator.state,
            "reference": self.hypervolume.state(),
            "space": self.problem.space.describe(),
            "objectives": [o.__dict__ for o in self.objectives],
            "algorithm": self.algorithm.name,
            **self.extra_meta,
        }
        arrays = {f"algorithm.{k}": v for k, v in self.algorithm.state_dict().items()}
        save_checkpoint(self.run_dir / CHECKPOINT, meta, arrays)

    def write_summary(self, stopped_by: str | None) -> dict[str, Any]:
        entries = list(self.archive.values())
        summary = {
            "task": self.extra_meta.get("task"),
            "algorithm": self.algorithm.name,
            "seed": self.seed,
            "objectives": [o.__dict__ for o in self.objectives],
            "best": public(best_entry(self.objectives, entries)) if entries else None,
            "pareto": [public(e) for e in pareto_entries(self.objectives, entries)],
            "evaluations": self.evaluations,
            "generations": self.generation,
            "wall_seconds": round(self.elapsed(), 3),
            "stopped_by": stopped_by,
            "baselines": {},
        }
        atomic_write_json(self.run_dir / "summary.json", summary)
        return summary

    def _target_reached(self) -> bool:
        best = best_entry(self.objectives, list(self.archive.values()))["fitness"][0]
        objective = self.objectives[0]
        return best == self.stop.target or objective.better(best, self.stop.target)

    # ---- resume -----------------------------------------------------------------

    def _check_compatible(self, meta: dict[str, Any]) -> None:
        if meta.get("format") != FORMAT_VERSION:
            raise UserError(f"checkpoint format {meta.get('format')} is not {FORMAT_VERSION}")
        now = self.problem.space.describe()
        if meta["space"] != now:
            raise UserError(
                f"{self.run_dir}: the genome layout differs from the checkpoint's "
                f"(checkpoint: {_short(meta['space'])}; now: {_short(now)})"
            )
        if meta["algorithm"] != self.algorithm.name:
            raise UserError(
                f"{self.run_dir}: checkpoint was written by algorithm {meta['algorithm']!r}, "
                f"not {self.algorithm.name!r}"
            )

    def _reload_files(self, generation: int | None) -> None:
        replay = not is_whole_generation(self.problem)
        self.cache.reload(self.run_dir, self.journal.path, generation, replay, self.evaluations)


def _short(obj: Any, limit: int = 160) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[: limit - 1] + "…"
