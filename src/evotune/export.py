"""`evotune export RUN_DIR --out FILE`: retrain a run's best genome and save the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evotune.engine.problem import evaluation_seed
from evotune.errors import UserError
from evotune.runner import load_resume_config


def export(run_dir: Path, out: Path, epochs: int | None = None) -> dict[str, Any]:
    """Retrain the best genome of `run_dir` (same seed as in the search; `epochs`
    overrides the run's) and write the model to `out`; returns path and metrics."""
    config = load_resume_config(run_dir)
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise UserError(f"{summary_path} not found: the run has not finished a generation")
    best = json.loads(summary_path.read_text())["best"]
    if best is None:
        raise UserError(f"{summary_path}: the run has no successful evaluation to export")
    task = config.task_class.from_config(config)
    if not hasattr(task, "export"):
        raise UserError(f"task {config.task_name!r} has nothing to export")
    genome = task.space.from_json(best["genome"])
    seed = evaluation_seed(config.search.seed, task.space.hash(genome))
    metrics = task.export(genome, seed, Path(out), epochs, source={"run": str(run_dir)})
    return {"path": str(out), "metrics": metrics}
