"""What a run reports from its evaluations: the best one, the Pareto front, the
hypervolume of a population, one record per generation, and summary.json's rows."""

from __future__ import annotations

from typing import Any

import moocore
import numpy as np

from evotune.engine.problem import Objective, Problem, losses_of

Entry = dict[str, Any]  # a journal line


def entry_losses(objectives: tuple[Objective, ...], entries: list[Entry]) -> np.ndarray:
    return losses_of(objectives, np.array([e["fitness"] for e in entries], dtype=float))


def best_entry(objectives: tuple[Objective, ...], entries: list[Entry]) -> Entry:
    """Best on the first objective, then the next ones, then a full-fidelity value over
    a lower one (the `fidelity` metric of a multi-fidelity task: a genome stopped at an
    earlier rung never wins a tie with one that reached the last), then the lowest hash
    (ties must not go to whichever result arrived first: Ray's order varies); a row
    with a NaN (inf loss) only if all have one."""
    losses = entry_losses(objectives, entries)
    hashes = [e["hash"] for e in entries]
    partial = [float((e.get("metrics") or {}).get("fidelity", 1.0)) < 1.0 for e in entries]
    keys = [hashes, partial, *losses.T[::-1], ~np.isfinite(losses).all(axis=1)]
    order = np.lexsort(keys)
    return entries[int(order[0])]


def pareto_entries(objectives: tuple[Objective, ...], entries: list[Entry]) -> list[Entry]:
    """The non-dominated entries with finite losses, sorted by the objectives in turn,
    then by hash: the same order whatever order the results arrived in."""
    if not entries:
        return []
    losses = entry_losses(objectives, entries)
    finite = np.flatnonzero(np.isfinite(losses).all(axis=1))
    if len(finite) == 0:
        return []
    front = finite[moocore.is_nondominated(losses[finite])]
    hashes = [entries[i]["hash"] for i in front]
    return [entries[i] for i in front[np.lexsort([hashes, *losses[front].T[::-1]])]]


def public(entry: Entry) -> Entry:
    """An entry as summary.json shows it."""
    return {k: entry[k] for k in ("hash", "genome", "fitness", "metrics")}


class Hypervolume:
    """Hypervolume of each generation's population against one reference point, fixed
    at the first generation (the task's, else the first population's worst + 10%) and
    kept in the checkpoint, so values compare across generations and resumes."""

    def __init__(self, problem: Problem, reference: list[float] | None = None) -> None:
        self.problem = problem
        self.reference = None if reference is None else np.array(reference)

    def __call__(self, losses: np.ndarray) -> float | None:
        if len(self.problem.objectives) < 2 or len(losses) == 0:
            return None
        if self.reference is None:
            self.reference = self._reference_point(losses)
        return float(moocore.hypervolume(losses, ref=self.reference))

    def _reference_point(self, losses: np.ndarray) -> np.ndarray:
        reference_point = getattr(self.problem, "reference_point", None)
        given = reference_point() if reference_point is not None else None
        if given is not None:
            return losses_of(self.problem.objectives, np.array([given]))[0]
        worst, best = losses.max(axis=0), losses.min(axis=0)
        return worst + np.maximum(0.1 * (worst - best), 1e-9)

    def state(self) -> list[float] | None:
        return None if self.reference is None else self.reference.tolist()


def population_record(
    problem: Problem, genomes: np.ndarray, losses: np.ndarray, hypervolume: Hypervolume
) -> Entry:
    """A generation's best and mean (natural units), its leader and its hypervolume."""
    signs = np.array([-1.0 if o.direction == "max" else 1.0 for o in problem.objectives])
    finite = np.isfinite(losses).all(axis=1)
    natural = losses[finite] * signs
    has_rows = len(natural) > 0
    leader = int(np.lexsort(losses.T[::-1])[0])  # best on the first objective
    return {
        "best": (np.min(losses[finite], axis=0) * signs).tolist() if has_rows else None,
        "mean": natural.mean(axis=0).tolist() if has_rows else None,
        "best_hash": problem.space.hash(genomes[leader]),
        "hypervolume": hypervolume(losses[finite]),
    }
