"""`evotune export RUN_DIR --out FILE`: retrain a run's best genome and save the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evotune.engine.problem import evaluation_seed
from evotune.errors import UserError
from evotune.runner import load_resume_config


def export(
    run_dir: Path, out: Path, epochs: int | None = None, pick: str | None = None
) -> dict[str, Any]:
    """Retrain the best genome of `run_dir` (same seed as in the search; `epochs`
    overrides the run's) and write the model to `out`; returns path and metrics.
    `pick` chooses a Pareto front member instead (accuracy|smallest|knee|index N)."""
    config = load_resume_config(run_dir)
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise UserError(f"{summary_path} not found: the run has not finished a generation")
    summary = json.loads(summary_path.read_text())
    best = summary["best"]
    if pick is not None:
        from evotune.prune.picks import pick as choose

        best = summary["pareto"][choose(summary["pareto"], summary["objectives"], pick)]
    if best is None:
        raise UserError(f"{summary_path}: the run has no successful evaluation to export")
    if hasattr(config.task_class, "export_run"):  # the run saved its model (weights)
        return config.task_class.export_run(run_dir, Path(out), best)
    task = config.task_class.from_config(config)
    if not hasattr(task, "export"):
        raise UserError(f"task {config.task_name!r} has nothing to export")
    genome = task.space.from_json(best["genome"])
    seed = evaluation_seed(config.search.seed, task.space.hash(genome))
    metrics = task.export(genome, seed, Path(out), epochs, source={"run": str(run_dir)})
    return {"path": str(out), "metrics": metrics}
