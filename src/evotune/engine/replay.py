"""The fitness cache and the journal replay of a resumed run.

`journal.jsonl` is the cache's source of truth: every genome evaluated once keeps its
first successful evaluation (`known`). On resume, lines past the checkpoint are
dropped and the interrupted generation's lines become `pending`: the re-asked
generation takes them instead of evaluating again. Failures are never cached (a failed
genome asked again is evaluated again) but a failure repeated within one generation is
shown, not retried (`failed`).

A confirmation (`repeat: elites`: a kept genome evaluated again from a derived seed,
journaled with `"confirms": true`) is folded into the genome's known entry: its fitness
becomes the mean over the evaluations at the highest fidelity among them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from evotune.engine.journal import read_jsonl, rewrite_jsonl
from evotune.errors import UserError

Entry = dict[str, Any]  # a journal line


class FitnessCache:
    def __init__(self) -> None:
        self.known: dict[str, Entry] = {}  # hash -> first successful evaluation
        self.pending: dict[tuple[int, int], Entry] = {}  # (generation, index) -> replayed
        self.failed: dict[str, Entry] = {}  # hash -> this generation's failure

    def remember(self, entry: Entry) -> None:
        known = self.known.get(entry["hash"])
        if entry.get("confirms") and known is not None:
            self.known[entry["hash"]] = fold(known, entry)
        else:
            self.known.setdefault(entry["hash"], entry)

    def confirmed(self, key: str) -> bool:
        return "evaluations" in self.known.get(key, {})

    def replayed(self, generation: int, index: int, key: str, journal: Path) -> Entry | None:
        """This generation's entry from the journal of an interrupted run, if any."""
        entry = self.pending.pop((generation, index), None)
        if entry is not None and entry["hash"] != key:
            raise UserError(
                f"{journal}: generation {generation} index {index} has genome "
                f"{entry['hash']}, but the resumed search asks {key}: the journal does not "
                "belong to this checkpoint"
            )
        return entry

    def first_unseen(self, entries: list[Entry | None], hashes: list[str]) -> list[int]:
        """Indices to evaluate: first occurrences of genomes with no known fitness."""
        todo, seen = [], set(self.known)
        for i, key in enumerate(hashes):
            if entries[i] is None and key not in seen:
                seen.add(key)
                todo.append(i)
        return todo

    def cached(self, generation: int, index: int, key: str) -> Entry:
        """A journal line for a genome known already (or failed earlier this generation)."""
        first = self.known.get(key) or self.failed[key]
        return {**first, "generation": generation, "index": index, "seconds": 0.0, "cached": True}

    def reload(
        self,
        run_dir: Path,
        journal: Path,
        generation: int | None,
        replay: bool,
        evaluations: int = 0,
    ) -> None:
        """Drop partial lines and lines past the checkpoint (at `generation`, with
        `evaluations` counted); index the journal. Failures of the interrupted generation
        are dropped too: they are evaluated again. So is all of it when `replay` is off
        (a whole-generation task, whose values depend on the call's genomes: a torn
        journal write may have kept only some of them). Without a checkpoint
        (`generation` None), every generation is replayed from the journal: the search
        asks the same genomes again and takes their journaled values."""
        lines = read_jsonl(journal)
        if generation is None:  # failures of finished generations replay as failures
            last = max((e["generation"] for e in lines), default=0)
            kept = [e for e in lines if e["generation"] < last or (replay and "error" not in e)]
            rewrite_jsonl(journal, kept)
            self._index(kept, generation=0)
            _truncate_generations(run_dir, 0)
            return
        kept = [
            e
            for e in lines
            if e["generation"] < generation
            or (e["generation"] == generation and "error" not in e and replay)
        ]
        _check_counts(journal, kept, generation, evaluations)
        rewrite_jsonl(journal, kept)
        self._index(kept, generation)
        _truncate_generations(run_dir, generation)

    def _index(self, entries: list[Entry], generation: int) -> None:
        """Entries before `generation` are known fitness; the rest are replayed."""
        for entry in entries:
            if entry["generation"] < generation:
                if not entry["cached"] and "error" not in entry:
                    self.remember(entry)
            else:
                self.pending[(entry["generation"], entry["index"])] = entry


def fold(known: Entry, confirmation: Entry) -> Entry:
    """A genome's entry with one more evaluation: fitness and numeric metrics are means
    over its evaluations at the highest fidelity (a value stopped at an earlier rung of
    successive halving does not mix with full-budget ones), plus `fitness_std` (first
    objective) and `repeats`. Its evaluations are kept under `evaluations`."""
    rows = known.get("evaluations") or [_row(known)]
    rows = [*rows, _row(confirmation)]
    top = max(row["fidelity"] for row in rows)
    used = [row for row in rows if row["fidelity"] == top]
    fitness = [float(v) for v in np.mean([row["fitness"] for row in used], axis=0)]
    metrics = mean_metrics([row["metrics"] for row in used])
    metrics |= {
        "fitness_std": seed_spread([row["fitness"][0] for row in used]),
        "repeats": len(used),
    }
    return {**known, "fitness": fitness, "metrics": metrics, "evaluations": rows}


def seed_spread(values: list[float]) -> float:
    """Standard deviation of one genome's values across seeds (finite ones; NaN if none)."""
    finite = [float(v) for v in values if math.isfinite(v)]
    return float(np.std(finite)) if finite else math.nan


def mean_metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each numeric metric's mean over the rows (others: the first row's value)."""
    out: dict[str, Any] = {}
    for key, value in rows[0].items():
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        values = [row[key] for row in rows if key in row]  # e.g. `rung`: not in every row
        out[key] = float(np.mean(values)) if is_number else value
    return out


def _row(entry: Entry) -> dict[str, Any]:
    metrics = entry.get("metrics") or {}
    return {
        "fitness": [float(v) for v in entry["fitness"]],
        "fidelity": float(metrics.get("fidelity", 1.0)),
        "metrics": {k: v for k, v in metrics.items() if k not in ("fitness_std", "repeats")},
    }


def _truncate_generations(run_dir: Path, generation: int) -> None:
    path = run_dir / "generations.jsonl"
    rewrite_jsonl(path, [r for r in read_jsonl(path) if r["generation"] < generation])


def _check_counts(journal: Path, kept: list[Entry], generation: int, evaluations: int) -> None:
    """Refuse a journal that lost lines the checkpoint counted (deleted, cut short):
    its genomes would be evaluated again and counted twice."""
    found = sum(1 for e in kept if e["generation"] < generation and not e["cached"])
    if found < evaluations:
        raise UserError(
            f"{journal} holds {found} evaluations of the {evaluations} the checkpoint "
            f"counted: it was deleted or cut short, and it is the run's fitness cache. "
            "Restore it from a backup, or start a new run"
        )
