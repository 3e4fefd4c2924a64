"""`evotune export RUN_DIR --out FILE`: retrain a run's best genome and save the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evotune.data.pipeline import record_pipeline
from evotune.engine.journal import read_jsonl
from evotune.engine.problem import evaluation_seed
from evotune.engine.replay import FitnessCache
from evotune.engine.summary import best_entry, pareto_entries, public
from evotune.errors import UserError
from evotune.prune.picks import pick as choose
from evotune.runner import load_resume_config
from evotune.tasks.base import build_task
from evotune.train.device import resolve_device


def export(
    run_dir: Path,
    out: Path,
    epochs: int | None = None,
    pick: str | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Retrain the best genome of `run_dir` (same seed as in the search; `epochs`
    overrides the run's) and write the model to `out`; returns path and metrics.
    `pick` chooses a Pareto front member instead (accuracy|smallest|knee|index N).
    `device` retrains there instead of on the run's `fitness.device` (a GPU run
    exported on a machine without one)."""
    if epochs is not None and epochs < 1:
        raise UserError(f"--epochs: expected a positive number of epochs, got {epochs}")
    config = load_resume_config(run_dir)
    if device is not None and "device" in type(config.fitness).model_fields:
        resolve_device(device, "--device")
        config.fitness = config.fitness.model_copy(update={"device": device})
    summary = run_summary(run_dir, config)
    if pick is not None and len(summary["objectives"]) < 2:
        names = ", ".join(o["name"] for o in summary["objectives"])
        raise UserError(
            f"--pick {pick}: the run has one objective ({names}), so no Pareto front to "
            "pick from; export its best without --pick"
        )
    best = summary["best"]
    if pick is not None:
        best = summary["pareto"][choose(summary["pareto"], summary["objectives"], pick)]
    if best is None:
        raise UserError(f"{run_dir}: the run has no successful evaluation to export yet")
    if hasattr(config.task_class, "export_run"):  # the run saved its model (weights)
        return config.task_class.export_run(run_dir, Path(out), best, config.data)
    task = build_task(config)
    if not hasattr(task, "export"):
        raise UserError(f"task {config.task_name!r} has nothing to export")
    genome = task.space.from_json(best["genome"])
    seed = evaluation_seed(config.search.seed, task.space.hash(genome))
    # The file is self-contained: it records how the run read its data (`pipeline`);
    # `run` only says where it came from.
    source = {"run": str(Path(run_dir).resolve()), "pipeline": task_pipeline(config, task)}
    metrics = task.export(genome, seed, Path(out), epochs, source=source)
    return {"path": str(out), "metrics": metrics}


def task_pipeline(config: Any, task: Any) -> dict[str, Any]:
    """The input pipeline of a task's data (data/pipeline.py), for the exported file."""
    data = getattr(task, "data", None)
    classes = data.classes if data is not None else task.classes
    shape = data.input_shape if data is not None else task.net.input_shape
    return record_pipeline(config.data, classes, shape, getattr(task, "input_map", None))


def run_summary(run_dir: Path, config: Any) -> dict[str, Any]:
    """summary.json, or for a run still going or interrupted (no summary yet) the best
    and the front of what its journal holds so far."""
    path = run_dir / "summary.json"
    if path.is_file():
        return json.loads(path.read_text())
    objectives = config.task_class.objectives_for(config)
    cache = FitnessCache()  # folds the confirmations of `repeat: elites`
    for entry in read_jsonl(run_dir / "journal.jsonl"):
        if "error" not in entry and not entry["cached"]:
            cache.remember(entry)
    entries = list(cache.known.values())
    return {
        "objectives": [o.__dict__ for o in objectives],
        "best": public(best_entry(objectives, entries)) if entries else None,
        "pareto": [public(e) for e in pareto_entries(objectives, entries)],
    }
