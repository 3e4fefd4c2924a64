"""`search.compare: [ga, annealing, random, tpe]`: several algorithms, one command.

Each algorithm runs on the same task config, genome space, budget (generations,
evaluations or minutes) and seed, into its own complete run directory RUN_DIR/<name>/
(journal, checkpoint, summary, report: `evotune resume|report|export RUN_DIR/<name>`
work on it alone). Each gets a freshly built task, so none profits from another's warm
caches in a wall-clock comparison. RUN_DIR holds the resolved config, a `summary.json`
whose `best` is the best over all algorithms and whose `comparison` maps each
algorithm to its result, and a report comparing them. `evotune resume RUN_DIR`
resumes (or finishes) every algorithm in turn.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from evotune.config import RunConfig
from evotune.engine.loop import Callbacks
from evotune.engine.problem import Objective, losses_of
from evotune.engine.state import atomic_write_json, atomic_write_text
from evotune.errors import UserError

# The runner's `start(config, run_dir, callbacks)` and `resume(run_dir, config,
# callbacks)`, passed in: the runner dispatches here, so this module does not import it.
Start = Callable[[RunConfig, Path, Callbacks | None], dict[str, Any]]
Resume = Callable[[Path, RunConfig, Callbacks | None], dict[str, Any]]


def sub_config(config: RunConfig, run_dir: Path, name: str) -> RunConfig:
    """The config of algorithm `name`'s own run, in RUN_DIR/<name>/."""
    search = config.search.model_copy(update={"algorithm": name, "compare": None})
    output = config.output.model_copy(update={"dir": str(run_dir / name)})
    return dataclasses.replace(config, search=search, output=output)


def compare(
    config: RunConfig,
    run_dir: Path,
    callbacks: Callbacks | None,
    resuming: bool,
    *,
    start: Start,
    resume: Resume,
) -> dict[str, Any]:
    """Run (or resume) every algorithm of `search.compare` with the runner's `start`
    and `resume`; returns the summary."""
    names = list(config.search.compare or [])
    if not resuming:
        held = [n for n in names if (run_dir / n / "config.yaml").exists()]
        if held:
            raise UserError(
                f"{run_dir} already holds runs ({', '.join(held)}): continue them with "
                f"`evotune resume {run_dir}` or choose another --out"
            )
    config.output.dir = str(run_dir)
    atomic_write_text(run_dir / "config.yaml", config.to_yaml())
    results = {}
    for i, name in enumerate(names):
        if callbacks is not None:  # progress lines name the algorithm
            callbacks.phase_started(f"algorithm {name}", i, len(names))
        sub, folder = sub_config(config, run_dir, name), run_dir / name
        held = (folder / "config.yaml").exists()
        results[name] = resume(folder, sub, callbacks) if held else start(sub, folder, callbacks)
    objectives = config.task_class.objectives_for(config)
    summary = comparison_summary(config, objectives, results)
    atomic_write_json(run_dir / "summary.json", summary)
    if config.output.report:
        from evotune.report import write_report

        write_report(run_dir)
    return summary


def comparison_summary(
    config: RunConfig, objectives: tuple[Objective, ...], results: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """A summary.json for RUN_DIR: the overall best and one entry per algorithm."""
    bests = {n: r["best"] for n, r in results.items() if r.get("best")}
    best = None
    if bests:
        fitness = np.array([b["fitness"] for b in bests.values()], dtype=float)
        winner = list(bests)[int(np.argmin(losses_of(objectives, fitness)[:, 0]))]
        best = {**bests[winner], "algorithm": winner}
    return {
        "task": config.task_name,
        "algorithm": "compare",
        "seed": config.search.seed,
        "objectives": [o.__dict__ for o in objectives],
        "best": best,
        "pareto": [],
        "evaluations": sum(r["evaluations"] for r in results.values()),
        "generations": max((r["generations"] for r in results.values()), default=0),
        "wall_seconds": round(sum(r["wall_seconds"] for r in results.values()), 3),
        "stopped_by": "compare",
        "baselines": {},
        "comparison": {n: _entry(n, r) for n, r in results.items()},
    }


def _entry(name: str, result: dict[str, Any]) -> dict[str, Any]:
    keys = ("best", "evaluations", "generations", "wall_seconds", "stopped_by")
    return {"dir": name, **{k: result.get(k) for k in keys}}


def comparison_table(summary: dict[str, Any]) -> str:
    """One line per algorithm: its best fitness, test accuracy, evaluations, time."""
    name = summary["objectives"][0]["name"]
    lines = [f"{'algorithm':<13} {name:>12} {'test acc':>9} {'evaluations':>11} {'seconds':>9}"]
    for algorithm, entry in summary["comparison"].items():
        best = entry.get("best") or {}
        value = f"{best['fitness'][0]:.5g}" if best.get("fitness") else "-"
        test = (best.get("metrics") or {}).get("test_accuracy")
        test_text = f"{test:.4f}" if isinstance(test, float) else "-"
        lines.append(
            f"{algorithm:<13} {value:>12} {test_text:>9} {entry['evaluations']:>11} "
            f"{entry['wall_seconds']:>9.1f}"
        )
    return "\n".join(lines)
