"""`evotune aggregate RUN_DIR... --out DIR`: merge the Pareto fronts of several runs
(e.g. the same search with seeds 0-9, as MOEvoPruneDeepTL reports 10 runs) into one.

DIR gets a summary.json whose `pareto` is the non-dominated set of every run's front
(each point keeps its `run` and `run_seed`, so its head can be retrained exactly),
pareto.csv, a report, and, for `prune` runs, the same analysis as a single run
(test metrics, ensembles, explanations) over the merged front, by the task of the first
run's config: the runs must share their configuration but for the seed and the settings
that do not change a result (threads, executor, output, analysis). Each baseline found
in every run gets its mean fitness and metrics over the runs (`runs`: how many).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import moocore
import numpy as np
import yaml

from evotune.engine.problem import Objective, losses_of
from evotune.engine.replay import mean_metrics
from evotune.engine.state import atomic_write_json, atomic_write_text
from evotune.errors import UserError
from evotune.prune.analysis import write_pareto_csv
from evotune.rundir import check_out_dir, clear_run_dir, run_lock
from evotune.tasks.base import build_task


def aggregate(
    run_dirs: list[Path], out: Path, analyse: bool = True, overwrite: bool = False
) -> dict[str, Any]:
    """Merge the runs' fronts into `out`, a new or empty directory (or, with
    `overwrite`, an earlier result: replaced once the input has been checked)."""
    summaries = [_summary(Path(r)) for r in run_dirs]
    _check_compatible(run_dirs, summaries)
    _check_same_config(run_dirs)
    _check_out(run_dirs, out, overwrite)
    merged = merge(run_dirs, summaries)
    task = _analysis_task(Path(run_dirs[0])) if analyse and merged["task"] == "prune" else None
    out.mkdir(parents=True, exist_ok=True)
    with run_lock(out):
        if overwrite:
            clear_run_dir(out)
        return _write(run_dirs, summaries, out, merged, task)


def _write(
    run_dirs: list[Path],
    summaries: list[dict[str, Any]],
    out: Path,
    merged: dict[str, Any],
    task: Any,
) -> dict[str, Any]:
    shutil.copyfile(Path(run_dirs[0]) / "config.yaml", out / "config.yaml")
    atomic_write_text(out / "generations.jsonl", "")
    atomic_write_json(out / "summary.json", merged)
    if task is not None:  # retrain the merged front, each point with its run's seed
        merged = task.after_search(out, merged)
    write_pareto_csv(out / "pareto.csv", merged)
    _add_runs_section(out, run_dirs, summaries, merged)
    from evotune.report import write_report

    write_report(out)
    return merged


def merge(run_dirs: list[Path], summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary whose front is the non-dominated union of the runs' fronts."""
    first = summaries[0]
    points = [
        {**p, "run": str(d), "run_seed": s["seed"]}
        for d, s in zip(run_dirs, summaries)
        for p in s.get("pareto") or []
    ]
    front: list[dict[str, Any]] = []
    if points:
        objectives = tuple(Objective(o["name"], o["direction"]) for o in first["objectives"])
        losses = losses_of(objectives, np.array([p["fitness"] for p in points], dtype=float))
        keep = np.flatnonzero(moocore.is_nondominated(losses))
        keep = keep[np.lexsort(losses[keep].T[::-1])]
        front = [points[i] for i in keep]
    return {
        "task": first["task"],
        "algorithm": "aggregate",
        "seed": first["seed"],
        "objectives": first["objectives"],
        "best": front[0] if front else None,
        "pareto": front,
        "evaluations": sum(s.get("evaluations", 0) for s in summaries),
        "generations": None,
        "wall_seconds": round(sum(s.get("wall_seconds", 0.0) for s in summaries), 3),
        "stopped_by": "aggregate",
        "baselines": merge_baselines(summaries),
        "runs": [str(d) for d in run_dirs],
    }


def merge_baselines(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Each baseline every run has: its mean fitness and numeric metrics over the runs."""
    found = [s.get("baselines") or {} for s in summaries]
    names = set(found[0]).intersection(*found[1:]) if found else set()
    merged = {}
    for name in sorted(names):
        rows = [f[name] for f in found]
        merged[name] = {
            "fitness": np.mean([r["fitness"] for r in rows], axis=0).tolist(),
            "metrics": mean_metrics([r.get("metrics") or {} for r in rows]),
            "runs": len(rows),
        }
    return merged


def _summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "summary.json"
    if not path.is_file():
        raise UserError(f"{path} not found: is {run_dir} a finished evotune run?")
    return json.loads(path.read_text())


def _check_compatible(run_dirs: list[Path], summaries: list[dict[str, Any]]) -> None:
    if len(run_dirs) < 1:
        raise UserError("aggregate: give at least one run directory")
    first = summaries[0]
    for run_dir, s in zip(run_dirs[1:], summaries[1:]):
        if s["task"] != first["task"] or s["objectives"] != first["objectives"]:
            raise UserError(
                f"{run_dir}: task {s['task']!r} with objectives {s['objectives']} does not "
                f"match {run_dirs[0]} ({first['task']!r}, {first['objectives']})"
            )


# Keys whose value may differ between merged runs: the seed, and what changes no result.
FREE_KEYS = {("search", "seed"), ("fitness", "threads"), ("task", "analysis")}
FREE_SECTIONS = {"executor", "output"}


def _check_same_config(run_dirs: list[Path]) -> None:
    configs = [_flat(yaml.safe_load((Path(d) / "config.yaml").read_text())) for d in run_dirs]
    for run_dir, config in zip(run_dirs[1:], configs[1:]):
        for key in sorted(set(config) | set(configs[0])):
            if key[0] in FREE_SECTIONS or key[:2] in FREE_KEYS:
                continue
            if config.get(key) != configs[0].get(key):
                raise UserError(
                    f"{run_dir}: config key {'.'.join(key)} is {config.get(key)!r}, but "
                    f"{configs[0].get(key)!r} in {run_dirs[0]}: aggregate merges runs of one "
                    "configuration (different seeds)"
                )


def _flat(tree: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    return {k: v for name, sub in tree.items() for k, v in _flat(sub, (*prefix, name)).items()}


def _check_out(run_dirs: list[Path], out: Path, overwrite: bool) -> None:
    if any(Path(r).resolve() == out.resolve() for r in run_dirs):
        raise UserError(f"--out {out} is one of the runs to merge: choose another --out")
    check_out_dir(out, overwrite)


def _analysis_task(first_run: Path) -> Any:
    """The task that retrains and analyses the merged front (built before anything is
    written, so bad input leaves --out untouched)."""
    from evotune.runner import load_resume_config

    config = load_resume_config(first_run)
    return build_task(config)


def _add_runs_section(
    out: Path, run_dirs: list[Path], summaries: list[dict[str, Any]], merged: dict[str, Any]
) -> None:
    """A table of the runs, first in analysis.json."""
    path = out / "analysis.json"
    data = json.loads(path.read_text()) if path.is_file() else {"sections": []}
    names = [o["name"] for o in merged["objectives"]]
    kept = [sum(p["run"] == str(d) for p in merged["pareto"]) for d in run_dirs]
    rows = [
        [str(d), s["seed"], len(s.get("pareto") or []), k, *(s["best"] or {}).get("fitness", [])]
        for d, s, k in zip(run_dirs, summaries, kept)
    ]
    text = f"{len(run_dirs)} runs merged into one front of {len(merged['pareto'])} points."
    if merged["best"] is not None:
        best = ", ".join(f"{n} {v:.4g}" for n, v in zip(names, merged["best"]["fitness"]))
        text += f" Best-accuracy point: {best}."
        if "auroc" in names:
            best_auroc = max(p["fitness"][names.index("auroc")] for p in merged["pareto"])
            text += f" Best AUROC on the front: {best_auroc:.4g}."
    section = {
        "title": "Aggregated runs",
        "text": text,
        "table": {
            "headers": ["run", "seed", "front", "kept", *[f"best {n}" for n in names]],
            "rows": rows,
        },
    }
    data["sections"] = [section, *data.get("sections", [])]
    atomic_write_json(path, data)
